"""Access-log lines per CPU-second through decode + featurize + score + tag (`flowtag score
--format combined`, batch 256, JSON lines out to /dev/null), per shipped web bundle, native and
WASM. Prints a Markdown table; figures go to docs/performance.md and the README.

    .venv/bin/python bench/web_bench.py [--lines 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOWTAG = REPO / "target" / "release" / "flowtag"
WASM = REPO / "target" / "flowtag_filter.wasm"


def cpu_of(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.log"
        with open(log, "wb") as f:
            subprocess.run([str(FLOWTAG), "gen", "--schema", "access-log", "--format", "combined", "--count", str(a.lines), "--seed", "9"], stdout=f, check=True)
        base = cpu_of([str(FLOWTAG), "decode", "--format", "combined", str(log)])
        print(f"decode only (flowtag decode): {a.lines / base:,.0f} lines per CPU-second\n")
        print("| bundle | runtime | reasons | lines per CPU-second (best of rounds) | all rounds |")
        print("|---|---|---|---|---|")
        for bundle in ("web-attacks", "web-site"):
            for runtime in ("native", "wasm"):
                for reasons in ("anomalous", "none"):
                    cmd = [str(FLOWTAG), "score", "--format", "combined", "--model", str(REPO / "models" / bundle), "--runtime", runtime,
                           "--reasons", reasons, "--data-dir", os.path.join(tmp, "cache"), str(log)]
                    if runtime == "wasm":
                        cmd[-1:-1] = ["--plugin", str(WASM)]
                    rates = [a.lines / cpu_of(cmd) for _ in range(a.rounds)]
                    print(f"| {bundle} | {runtime} | {reasons} | {max(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |", flush=True)


if __name__ == "__main__":
    main()
