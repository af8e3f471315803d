"""Helpers for tests that drive the real `flowtag` binary next to real services (an MLflow
server, Prometheus, Alertmanager, an SMTP server) on 127.0.0.1. Every wait is bounded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, limit: float, what: str, every: float = 0.1):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def file_source_head(data: Path, api: int, include: str | Path) -> str:
    """The head of most end-to-end configs: `data_dir`, the API on `api`, and a file source
    `flows` reading `include`. The caller appends the source's other keys and the rest."""
    return f'''data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"
[sources.flows]
type = "file"
include = ["{include}"]
'''


class Flowtag:
    """`flowtag run` with a config; stopped (SIGTERM, then kill) at the end."""

    def __init__(self, binary: Path, workdir: Path, config: str, api: int, env: dict | None = None):
        self.api, self.workdir = api, workdir
        path = workdir / "flowtag.toml"
        path.write_text(config)
        self.log_path = workdir / "flowtag.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary), "run", "--config", str(path)], stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        wait_until(lambda: self.proc.poll() is not None or http_ok(f"http://127.0.0.1:{api}/ready"), 60, "flowtag to be ready")
        assert self.proc.poll() is None, f"flowtag exited:\n{self.log()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> list[tuple[str, dict, float]]:
        return metrics.scrape(f"127.0.0.1:{self.api}")

    def metric(self, name: str, **labels) -> float:
        return metrics.total(self.metrics(), name, **labels)

    def post(self, path: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api}{path}", data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


class FlowWriter:
    """Appends flow records with a `seq` to a file, about 2,000 a second, until stopped."""

    def __init__(self, path: Path, make_record):
        self.path, self.make = path, make_record
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        with open(self.path, "a") as f:
            while not self._stop.is_set() and self.written < 1_000_000:
                f.write("".join(json.dumps(self.make(self.written + i)) + "\n" for i in range(100)))
                f.flush()
                self.written += 100
                time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.written


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a file; a line the sink is still writing is not read yet."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
