"""The central side at scale: `flowtag-train prepare` with pandas and with Spark `local[2]` on
generated UNSW-NB15 rows (`flowtag gen`), each run in a memory cgroup with the same cap, and
`flowtag-train score-batch` on Spark. Prints a Markdown table: wall time, CPU time (user + system
of the whole process tree: Python, the JVM, Spark's Python workers), peak memory (the tree's
summed resident set, sampled every 0.2 s), rows per second, and whether the run finished.

    .venv/bin/python bench/central_bench.py [--rows 1000000 10000000] [--cap 4G] [--score-rows 1000000]
    .venv/bin/python bench/central_bench.py --rows 20000000 --cap 2G --score-rows 0   # larger than the cap

The cap is a cgroup v1 memory limit (/sys/fs/cgroup/memory, writable when run as root in this
kind of machine; no swap here, so a run over the cap is killed). Without a writable cgroup the
runs are not capped and the table says so. Figures go to docs/central.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FLOWTAG = REPO / "target" / "release" / "flowtag"
CGROUP = Path("/sys/fs/cgroup/memory")
CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def parse_size(s: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1].upper()]) if s[-1].upper() in units else int(s)


class Cap:
    """A memory cgroup (the cap) and a cpuacct cgroup (the CPU time of every process in it,
    the JVM and Spark's workers included) the measured command runs in; nothing when the cgroup
    folders are not writable."""

    def __init__(self, limit: int):
        self.path = self.cpu = None
        name = f"flowtag-bench-{os.getpid()}-{time.monotonic_ns()}"
        if CGROUP.is_dir() and os.access(CGROUP, os.W_OK):
            self.path = CGROUP / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        if CPUACCT.is_dir() and os.access(CPUACCT, os.W_OK):
            self.cpu = CPUACCT / name
            self.cpu.mkdir()

    def preexec(self):
        groups = [g / "cgroup.procs" for g in (self.path, self.cpu) if g is not None]

        def enter():
            for procs in groups:
                procs.write_text(str(os.getpid()))

        return enter if groups else None

    def cpu_seconds(self) -> float | None:
        return int((self.cpu / "cpuacct.usage").read_text()) / 1e9 if self.cpu is not None else None

    def killed(self, returncode: int) -> bool:
        """Whether the kernel killed a process of the group for going over the cap."""
        if self.path is None:
            return False
        stats = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines() if len(line.split()) == 2)
        return int(stats.get("oom_kill", 0)) > 0 or (returncode == -9 and int((self.path / "memory.failcnt").read_text()) > 0)

    def close(self):
        for g in (self.path, self.cpu):
            if g is None:
                continue
            # Processes left behind (a JVM whose driver died) are ended first.
            for pid in (g / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            for _ in range(50):
                try:
                    g.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def measure(cmd: list[str], cap: int, env: dict | None = None, quiet: bool = False) -> dict:
    """Run `cmd` under the cap: wall and CPU seconds, peak tree RSS, exit status."""
    group = Cap(cap)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if quiet else subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=group.preexec(), env=env)
    peak = [0]

    def sample():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(c.memory_info().rss for c in [p, *p.children(recursive=True)])
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    t.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    killed = group.killed(proc.returncode)
    cpu = group.cpu_seconds()
    group.close()
    return {
        "ok": proc.returncode == 0, "returncode": proc.returncode, "killed": killed, "wall": wall,
        "cpu": cpu if cpu is not None else (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), "peak": peak[0],
        "capped": group.path is not None, "stderr": err.decode(errors="replace")[-600:], "stdout": (out or b"").decode(errors="replace"),
    }


def generate(rows: int, path: Path) -> None:
    if path.exists():
        return
    with open(path, "wb") as f:
        subprocess.run([str(FLOWTAG), "gen", "--schema", "unsw", "--count", str(rows), "--seed", "5"], stdout=f, check=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000], help="rows to prepare (none: only score)")
    p.add_argument("--cap", default="4G", help="memory cap of each run (cgroup)")
    p.add_argument("--score-rows", type=int, default=1_000_000)
    p.add_argument("--bundles", nargs="+", default=["unsw-unsupervised", "unsw-supervised"])
    p.add_argument("--work", default=None, help="where generated data and outputs go (default: a temporary folder)")
    p.add_argument("--spark-conf", default='{"spark.driver.memory": "1g"}', help="FLOWTAG_SPARK_CONF for the Spark runs (keep the JVM heap under the cap)")
    p.add_argument("--skip-pandas-over", type=int, default=None, help="do not run pandas on more rows than this")
    a = p.parse_args()
    cap = parse_size(a.cap)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="flowtag-central-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    spark_env = {**os.environ, "FLOWTAG_SPARK_MASTER": "local[2]", "FLOWTAG_SPARK_CONF": a.spark_conf}
    print(f"cap {a.cap} per run ({'cgroup' if Cap(1 << 40).path is not None else 'NOT capped: no writable memory cgroup'}), work in {work}\n")
    print("| job | rows | input | engine | finished | wall s | CPU s | peak memory | rows/s (wall) |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|")
    for rows in a.rows:
        data = work / f"unsw-{rows}.csv"
        generate(rows, data)
        size = data.stat().st_size
        for engine in ("pandas", "spark"):
            if engine == "pandas" and a.skip_pandas_over is not None and rows > a.skip_pandas_over:
                print(f"| prepare | {rows:,} | {size / 2**30:.2f} GiB | pandas | not run (`--skip-pandas-over`) | | | | |")
                continue
            out = work / f"prepared-{engine}-{rows}"
            shutil.rmtree(out, ignore_errors=True)
            r = measure([py, "-m", "flowtag_train.cli", "prepare", "--engine", engine, "--dataset", "unsw_nb15", "--input", str(data), "--out", str(out)], cap, spark_env)
            status = "yes" if r["ok"] else ("killed at the cap" if r["killed"] else f"no (exit {r['returncode']})")
            rate = f"{rows / r['wall']:,.0f}" if r["ok"] else ""
            print(f"| prepare | {rows:,} | {size / 2**30:.2f} GiB | {engine} | {status} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak'] / 2**30:.2f} GiB | {rate} |", flush=True)
            if not r["ok"] and not r["killed"]:
                print(f"<!-- {r['stderr']} -->")
            shutil.rmtree(out, ignore_errors=True)
    data = work / f"unsw-{a.score_rows}.csv"
    if a.score_rows:
        generate(a.score_rows, data)
    for bundle in a.bundles if a.score_rows else []:
        for ordered in (True, False):
            out = work / "scored"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [py, "-m", "flowtag_train.cli", "score-batch", "--bundle", str(REPO / "models" / bundle), "--format", "unsw", "--input", str(data), "--out", str(out)]
            r = measure(cmd + (["--ordered"] if ordered else []), cap, spark_env)
            status = "yes" if r["ok"] else ("killed at the cap" if r["killed"] else f"no (exit {r['returncode']})")
            label = f"score-batch {bundle}{' --ordered' if ordered else ''}"
            print(f"| {label} | {a.score_rows:,} | {data.stat().st_size / 2**30:.2f} GiB | spark | {status} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak'] / 2**30:.2f} GiB | {a.score_rows / r['wall']:,.0f} |", flush=True)
            if not r["ok"]:
                print(f"<!-- {r['stderr']} -->")
            shutil.rmtree(out, ignore_errors=True)
        single = measure([str(FLOWTAG), "score", "--model", str(REPO / "models" / bundle), "--format", "unsw", str(data)], cap, quiet=True)
        print(f"| flowtag score {bundle} (one process, for comparison) | {a.score_rows:,} | | native | {'yes' if single['ok'] else 'no'} | {single['wall']:.1f} | {single['cpu']:.1f} | {single['peak'] / 2**30:.2f} GiB | {a.score_rows / single['wall']:,.0f} |", flush=True)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
