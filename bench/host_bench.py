"""Host throughput: 1 M JSON flow records from a file, through the tag filter (the Isolation
Forest fixture of 100 trees, or `--model` BUNDLE), to a file (`tag`) or to a `blackhole` sink
(`blackhole`: the pipeline without a sink's I/O); the same records file to file without the
transform (`plain`); and the tag filter followed by a `route` that sends anomalies to one file
and the rest to another (`route`: what routing costs per record).

    .venv/bin/python bench/host_bench.py [--records 1000000] [--flowtag target/release/flowtag]
                                         [--pipelines tag,blackhole,plain,route] [--rounds 1]
                                         [--model models/unsw-unsupervised] [--schema unsw|cicflowmeter]

Prints events/s (wall clock), CPU seconds (user + system of the flowtag process), records per
CPU-second, and peak RSS. Records come from `flowtag gen --schema SCHEMA --format json`.

Each pipeline runs once ("first"), then `--rounds` more times ("steady"), from an empty output
and checkpoint each time, the rounds interleaved across pipelines; every run is printed, and
with several rounds the median and fastest CPU time of each pipeline. On a machine fresh from boot, the first run's output goes into page-cache memory the
kernel has not used yet; on a virtual machine, the first touch of such a page is slow (most
likely the hypervisor backing it), and it happens inside the sink's `write` (on our test VM,
`dd` of 2 GB took 4.5-5.7 s of system CPU into such pages and 0.5-0.8 s into freed ones). The
steady runs write into pages the first one freed, as a node that has run for a while does: they
are the steady-state figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testkit.metrics import scrape, total  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(api: int, name: str, component: str) -> float:
    return total(scrape(f"127.0.0.1:{api}"), name, component_id=component)


PIPELINES = {
    "tag": "file -> anomaly ({model}) -> file",
    "blackhole": "file -> anomaly ({model}) -> blackhole",
    "plain": "file -> file",
    "route": "file -> anomaly ({model}) -> route -> two files",
}
FIXTURE = ROOT / "plugin/tests/fixtures/iforest"


def label_of(pipeline: str, model: Path) -> str:
    name = "IF fixture, 100 trees" if model == FIXTURE else model.name
    return PIPELINES[pipeline].format(model=name)


def config(pipeline: str, work: Path, data: Path, input_path: Path, api: int, model: Path) -> tuple[str, list[str]]:
    """The config of a pipeline, and the sinks whose confirmed events make the total."""
    head = f"""
data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"
[sources.flows]
type = "file"
include = ["{input_path}"]
"""
    tag = f"""
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
"""
    def sink(name: str, input_: str) -> str:
        return f'\n[sinks.{name}]\ntype = "file"\ninputs = ["{input_}"]\npath = "{work / (name + ".jsonl")}"\n'
    if pipeline == "plain":
        return head + sink("out", "flows"), ["out"]
    if pipeline == "tag":
        return head + tag + sink("out", "tag"), ["out"]
    if pipeline == "blackhole":
        return head + tag + '\n[sinks.out]\ntype = "blackhole"\ninputs = ["tag"]\n', ["out"]
    route = """
[transforms.pick]
type = "route"
inputs = ["tag"]
route.anomalous = 'anomaly.verdict == "anomalous"'
"""
    return head + tag + route + sink("siem", "pick.anomalous") + sink("archive", "pick._unmatched"), ["siem", "archive"]


def run(flowtag: Path, work: Path, input_path: Path, n: int, pipeline: str, api: int, label: str, model: Path) -> dict:
    data = work / f"data-{pipeline}"
    shutil.rmtree(data, ignore_errors=True)  # the checkpoint of the run before
    cfg, sinks = config(pipeline, work, data, input_path, api, model)
    path = work / f"{pipeline}.toml"
    path.write_text(cfg)
    start = time.perf_counter()
    proc = subprocess.Popen([str(flowtag), "run", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if sum(metric(api, "flowtag_component_sent_events_total", s) for s in sinks) >= n:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid)
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for s in sinks:
        (work / f"{s}.jsonl").unlink(missing_ok=True)
    return {"pipeline": label_of(pipeline, model), "run": label, "records": n, "wall_s": round(wall, 2),
            "events_per_s": round(n / wall), "cpu_s": round(cpu, 2), "records_per_cpu_s": round(n / cpu), "peak_rss_mib": round(rss, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--flowtag", default=str(ROOT / "target/release/flowtag"))
    ap.add_argument("--pipelines", default="tag,plain,route", help="comma-separated: " + ", ".join(PIPELINES))
    ap.add_argument("--model", default=str(FIXTURE), help="the bundle the tag filter runs (default: the Isolation Forest fixture)")
    ap.add_argument("--schema", default="unsw", choices=["unsw", "cicflowmeter"], help="the records `flowtag gen` writes")
    ap.add_argument("--rounds", type=int, default=1,
                    help="steady runs per pipeline, interleaved across pipelines so a drifting VM slows all alike")
    a = ap.parse_args()
    flowtag = Path(a.flowtag)
    model = Path(a.model).resolve()
    pipelines = a.pipelines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        input_path = work / "flows.jsonl"
        with open(input_path, "wb") as f:
            subprocess.run([str(flowtag), "gen", "--schema", a.schema, "--format", "json", "--count", str(a.records), "--seed", "3"], stdout=f, check=True)
        api = lambda i, k: 19700 + 2 * i + k  # noqa: E731
        results = [run(flowtag, work, input_path, a.records, p, api(i, 0), "first", model) for i, p in enumerate(pipelines)]
        for r in range(a.rounds):
            label = "steady" if a.rounds == 1 else f"steady {r + 1}"
            results += [run(flowtag, work, input_path, a.records, p, api(i, 1), label, model) for i, p in enumerate(pipelines)]
    print(json.dumps(results, indent=1))
    print("| pipeline | run | records | wall s | events/s | CPU s | records per CPU-second | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['pipeline']} | {r['run']} | {r['records']} | {r['wall_s']} | {r['events_per_s']} | {r['cpu_s']} | {r['records_per_cpu_s']} | {r['peak_rss_mib']} |")
    steady = {p: sorted(r["cpu_s"] for r in results if r["pipeline"] == label_of(p, model) and r["run"] != "first") for p in pipelines}
    if a.rounds > 1:
        print("\n| pipeline | steady runs | median CPU s | min CPU s | records per CPU-second (median) |")
        print("|---|---|---|---|---|")
        for p, cpu in steady.items():
            print(f"| {label_of(p, model)} | {len(cpu)} | {statistics.median(cpu):.2f} | {cpu[0]:.2f} | {round(a.records / statistics.median(cpu))} |")
    if "tag" in steady and "route" in steady:
        med = statistics.median(steady["route"]) / statistics.median(steady["tag"]) - 1
        low = steady["route"][0] / steady["tag"][0] - 1
        print(f"\nrouting costs {med:+.0%} CPU per record over tag -> file (medians; {low:+.0%} between the fastest runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
