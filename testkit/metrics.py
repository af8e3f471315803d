"""Reading a running flowtag's `/metrics` (Prometheus text format). Standard library only: the
demo's report runs before any Python environment exists."""

from __future__ import annotations

import re
import urllib.request

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    """Every sample of an exposition: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))))
    return out


def scrape(address: str, timeout: float = 5) -> list[Sample]:
    """The samples at `http://ADDRESS/metrics` (`ADDRESS` is host:port)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
        return parse(r.read().decode())


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == str(x) for k, x in labels.items()))
