"""Model pushes from a real MLflow server (the pinned mlflow, on 127.0.0.1, sqlite store, proxied
artifacts) to a host under continuous load: register v1 → the host serves v1; register v2 and
move the alias → it switches within one interval; a tampered v3 → refused, v2 kept; every record
in comes out once, tagged by exactly one version, versions in order."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import Flowtag, FlowWriter, file_source_head, free_port, read_jsonl, wait_until
from flowtag_train import tracking
from testkit import mlflow as testkit_mlflow

REPO = Path(__file__).resolve().parents[3]
INTERVAL = 1.0


@pytest.fixture
def mlflow_server(tmp_path):
    with testkit_mlflow.mlflow_server(tmp_path) as uri:
        yield uri


def bundle(dst: Path, version: str, tamper: bool = False) -> Path:
    shutil.copytree(REPO / "models/flows-portable", dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["version"] = version
    (dst / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    if tamper:
        data = bytearray((dst / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0x55
        (dst / "model.onnx").write_bytes(bytes(data))
    return dst


def publish(uri: str, bundle_dir: Path, alias: str = "champion") -> str:
    run = tracking.log_run(experiment="pushes", run_name=bundle_dir.name, params={}, metrics={}, bundle_dir=bundle_dir, artifacts=[], tags={}, uri=uri)
    return tracking.register(run, "flows", alias, uri=uri)


def record(i: int) -> dict:
    return {"seq": i, "dur": (i % 89) / 10, "proto": ["tcp", "udp"][i % 2], "service": ["-", "dns", "http"][i % 3],
            "spkts": 2 + i % 30, "dpkts": 1 + i % 20, "sbytes": 100 + 37 * (i % 1000), "dbytes": 50 + 91 * (i % 700)}


def test_host_follows_the_mlflow_alias_and_refuses_a_tampered_version(tmp_path, mlflow_server, flowtag):
    baseline = bundle(tmp_path / "v0", "0")
    assert publish(mlflow_server, bundle(tmp_path / "v1", "1")) == "1"
    api = free_port()
    config = f"""
{file_source_head(tmp_path / "data", api, tmp_path / "flows.jsonl")}
poll_interval = "50ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{baseline}"
batch.max_events = 128
[transforms.tag.updates]
source = "mlflow"
uri = "{mlflow_server}"
model_name = "flows"
alias = "champion"
interval = "{INTERVAL}s"
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{tmp_path / 'out.jsonl'}"
"""
    writer = FlowWriter(tmp_path / "flows.jsonl", record)
    ft = Flowtag(flowtag, tmp_path, config, api)
    try:
        wait_until(lambda: ft.metric("flowtag_model_info", component_id="tag", version="1") == 1, 30, "v1 from MLflow")

        assert publish(mlflow_server, bundle(tmp_path / "v2", "2")) == "2"
        moved = time.monotonic()
        wait_until(lambda: ft.metric("flowtag_model_info", component_id="tag", version="2") == 1, 30, "v2")
        # One interval, plus the download and checks.
        assert time.monotonic() - moved < INTERVAL + 5

        assert publish(mlflow_server, bundle(tmp_path / "v3", "3", tamper=True)) == "3"
        wait_until(lambda: ft.metric("flowtag_model_reloads_total", component_id="tag", result="refused") >= 1, 30, "v3 refused")
        assert ft.metric("flowtag_model_info", component_id="tag", version="2") == 1
        assert ft.metric("flowtag_model_info", component_id="tag", version="3") == 0
        assert "sha256" in ft.log()
        assert ft.metric("flowtag_model_reloads_total", component_id="tag", result="ok") == 2
        assert ft.metric("flowtag_model_last_check_timestamp_seconds", component_id="tag") > time.time() - 30
        time.sleep(0.5)
    finally:
        written = writer.stop()
    wait_until(lambda: len(read_jsonl(tmp_path / "out.jsonl")) >= written, 60, "every record out")
    assert ft.stop() == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    by_seq = {}
    for r in out:
        model = r["anomaly"]["model"]
        assert by_seq.setdefault(r["seq"], model) == model
    assert sorted(by_seq) == list(range(written)), "every record in comes out"
    order = []
    for s in range(written):
        if not order or order[-1] != by_seq[s]:
            order.append(by_seq[s])
    # The first check runs at start, so v1 may already serve the first record.
    assert order in (["flows-portable@0", "flows-portable@1", "flows-portable@2"], ["flows-portable@1", "flows-portable@2"]), order
