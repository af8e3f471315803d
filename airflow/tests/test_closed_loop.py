"""The loop closed, with every part real: a node (`flowtag run`) tags UNSW-NB15 flows and archives
them with a file sink (JSON lines, tags included); the `flowtag_retrain` DAG retrains on that
archive against a real MLflow server, its gate promotes the candidate to `champion` and it is
signed; a second node, configured to follow that alias in MLflow with the public key, pulls the
new champion and tags with it."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from flowtag_export import signing
from flowtag_train import tracking
from testkit.flowtag import Flowtag, file_source_head, free_port, read_jsonl, wait_until
from testkit.mlflow import mlflow_server

from test_flowtag_retrain import airflow_home, run_dag  # noqa: F401 (airflow_home is a fixture)

REPO = Path(__file__).resolve().parents[2]


def node(tmp: Path, flowtag: Path, name: str, csv: Path, model: Path, extra: str = "") -> tuple[Flowtag, Path]:
    """A node tailing `csv` (UNSW-NB15 columns), tagging with `model`, archiving to a file."""
    work = tmp / name
    work.mkdir()
    api = free_port()
    archive = work / "archive" / "flows.jsonl"
    config = f"""{file_source_head(work / 'data', api, csv)}decoding = "unsw"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
{extra}
[sinks.archive]
type = "file"
inputs = ["tag"]
path = "{archive}"
"""
    return Flowtag(flowtag, work, config, api), archive


def test_a_node_archive_trains_the_champion_that_nodes_then_pull(airflow_home, datasets, tmp_path, flowtag):  # noqa: F811
    # The node's input: the shared UNSW-NB15 file, copied to a log it tails.
    csv = tmp_path / "flows.csv"
    shutil.copyfile(datasets / "unsw-nb15/UNSW_NB15_dev.csv", csv)
    rows = sum(1 for _ in csv.open(encoding="utf-8-sig")) - 1

    # 1. A node tags and archives what it sees.
    ft, archive = node(tmp_path, flowtag, "edge", csv, REPO / "models/unsw-supervised")
    try:
        wait_until(lambda: archive.exists() and len(read_jsonl(archive)) >= rows, 60, "the archive")
    finally:
        assert ft.stop() == 0, ft.log()
    archived = read_jsonl(archive)
    assert len(archived) == rows and all(r["anomaly"]["model"] == "unsw-supervised@1" for r in archived)

    with mlflow_server(tmp_path) as uri:
        # 2. The DAG retrains on the archive and registers a signed champion in MLflow.
        private, public = tmp_path / "models.key", tmp_path / "models.pub"
        signing.keygen(private, public)
        run = run_dag(airflow_home, {"files": [str(archive)], "limit": 10000, "eval_rows": 3000, "tracking_uri": uri,
                                     "work_dir": str(tmp_path / "work"), "private_key": str(private), "models": ["gradient_boosting"]})
        assert run["state"] == "success", run
        assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1", run
        champion = tracking.download_bundle("unsw-supervised", "1", tmp_path / "champion", uri=uri)
        manifest = json.loads((champion / "manifest.json").read_text())
        assert [f["path"] for f in manifest["training"]["files"]] == ["flows.jsonl"], "trained on the node's archive"

        # 3. A node that starts on an older model follows the alias and serves the champion.
        start = tmp_path / "start"
        shutil.copytree(REPO / "models/unsw-supervised", start)
        m = json.loads((start / "manifest.json").read_text())
        m["version"] = "0"
        (start / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
        signing.sign(start, private)
        updates = f"""[transforms.tag.updates]
source = "mlflow"
uri = "{uri}"
model_name = "unsw-supervised"
alias = "champion"
interval = "1s"
public_key = "{public}"
"""
        ft, out = node(tmp_path, flowtag, "next", csv, start, updates)
        try:
            wait_until(lambda: ft.metric("flowtag_model_info", component_id="tag", version="1") == 1, 60, "the champion from MLflow")
            assert ft.metric("flowtag_model_reloads_total", component_id="tag", result="ok") == 1
            wait_until(lambda: out.exists() and len(read_jsonl(out)) >= rows, 60, "tagged records")
        finally:
            assert ft.stop() == 0, ft.log()
    models = {r["anomaly"]["model"] for r in read_jsonl(out)}
    assert "unsw-supervised@1" in models and models <= {"unsw-supervised@0", "unsw-supervised@1"}, models
    # What the node serves (its store's current bundle) is the registered champion's model.
    with tarfile.open(tmp_path / "next" / "data" / "transforms" / "tag" / "models" / "current.tar") as t:
        served = json.loads(next(t.extractfile(m) for m in t.getmembers() if Path(m.name).name == "manifest.json").read())
    assert served["model_sha256"] == manifest["model_sha256"] and served["version"] == "1"
