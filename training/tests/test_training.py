"""Training runs on small real subsets: every model kind end to end (the sklearn-vs-onnxruntime
parity check inside `train` fails the run when the graph disagrees), splits that do not leak,
the threshold rule, and MLflow logging, registration and aliases on a local sqlite store."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from flowtag_export.bundle import read
from flowtag_export.manifest import validate
from flowtag_train import cli, evaluate, overlap, splits, tracking
from flowtag_train.datasets import Dataset, Schema, load
from flowtag_train.pipeline import PARITY, TrainConfig, prepare, train

SMALL = {
    "isolation_forest": {"n_estimators": 30},
    "autoencoder": {"hidden": [16, 4, 16], "epochs": 8, "patience": 3},
    "random_forest": {"n_estimators": 20, "max_depth": 8},
    "gradient_boosting": {"max_iter": 30},
}


@pytest.mark.parametrize("model", sorted(SMALL))
def test_each_model_trains_exports_and_scores_like_sklearn(datasets, tmp_path, model, flowtag):
    cfg = TrainConfig(dataset="unsw_nb15", model=model, name=f"smoke-{model}", limit=4000, params=SMALL[model], out=str(tmp_path), log_to_mlflow=False)
    r = train(cfg)
    b = read(r.bundle_dir)
    validate(b.manifest)
    m = b.manifest
    assert m["kind"] == {"isolation_forest": "isolation_forest", "autoencoder": "autoencoder"}.get(model, "classifier")
    parity = m["metrics"]["parity_sklearn_onnx"]
    assert parity["rows"] > 1000 and parity["max_relative_diff"] <= PARITY
    for key in ("roc_auc", "pr_auc", "f1", "precision", "recall", "fpr", "detection_at_fpr_1e-2", "detection_at_fpr_1e-3", "recall_by_family"):
        assert key in m["metrics"], key
    # Far from chance even on 4,000 rows (the unsupervised models see only normal traffic).
    floor = 0.65 if model in ("isolation_forest", "autoencoder") else 0.9
    assert m["metrics"]["roc_auc"] > floor, m["metrics"]["roc_auc"]
    assert m["training"]["files"][0]["path"] == "UNSW_NB15_dev.csv" and len(m["training"]["files"][0]["sha256"]) == 64
    assert m["training"]["code_revision"] != ""
    # The canaries are synthesised, not dataset rows, and the Rust plugin reproduces them.
    assert len(m["canaries"]) >= 4
    records = "\n".join(json.dumps(c["record"]) for c in m["canaries"]) + "\n"
    out = subprocess.run([str(flowtag), "score", "--model", str(r.bundle_dir), "--format", "json"], input=records.encode(), capture_output=True, check=True)
    tags = [json.loads(line)["anomaly"] for line in out.stdout.splitlines()]
    for c, t in zip(m["canaries"], tags, strict=True):
        assert t["verdict"] == c["verdict"] and abs(t["raw_score"] - c["raw_score"]) <= 1e-5 * max(1.0, abs(c["raw_score"])), (c, t)
    # Report and plots
    report = r.report.read_text()
    assert "ROC-AUC" in report or "roc_auc" in report
    for png in ("roc.png", "pr.png", "score_histogram.png", "confusion.png"):
        assert (r.report.parent / png).stat().st_size > 1000


def test_split_keeps_identical_rows_together_and_holds_out_a_family(datasets):
    cfg = TrainConfig(dataset="unsw_nb15", model="autoencoder", name="x", limit=6000, holdout_family="Exploits")
    ds, sp, spec = prepare(cfg)
    sets = [set(sp.train), set(sp.valid), set(sp.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(map(len, sets)) == len(ds)
    assert not (ds.family[sp.train] == "Exploits").any() and not (ds.family[sp.valid] == "Exploits").any()
    assert (ds.family[sp.test] == "Exploits").sum() == (ds.family == "Exploits").sum()
    cols = [f.name for f in spec.features]
    keys = splits.groups(ds, cols)
    assert not set(keys[sp.train]) & set(keys[sp.test])
    with pytest.raises(ValueError, match="no attack family 'Nope'"):
        splits.split(ds, cols, seed=1, holdout_family="Nope")


def test_threshold_meets_the_target_false_positive_rate():
    rng = np.random.default_rng(3)
    normal = rng.normal(size=20000).astype(np.float32)
    for target in (0.01, 0.001):
        thr = evaluate.threshold_for_fpr(normal, target)
        assert (normal >= thr).mean() <= target
        assert (normal >= thr).mean() >= target * 0.8


def test_mlflow_run_registration_aliases_and_compare(datasets, tmp_path, tracking_uri, capsys):
    base = dict(dataset="unsw_nb15", model="isolation_forest", limit=3000, params={"n_estimators": 20}, out=str(tmp_path / "b"), tracking_uri=tracking_uri, register=True)
    r1 = train(TrainConfig(name="flows", **base))
    r2 = train(TrainConfig(name="flows", seed=7, **base))
    assert (r1.version, r2.version) == ("1", "2")
    # The manifest carries the registry's version, so tags name what MLflow shows.
    assert read(r2.bundle_dir).manifest["version"] == "2"
    assert tracking.alias_version("flows", "challenger", uri=tracking_uri) == "2"
    assert tracking.alias_version("flows", "champion", uri=tracking_uri) is None
    assert cli.main(["--tracking-uri", tracking_uri, "promote", "--name", "flows", "--version", "1"]) == 0
    assert tracking.alias_version("flows", "champion", uri=tracking_uri) == "1"

    import mlflow

    run = mlflow.MlflowClient(tracking_uri).get_run(r1.run_id)
    assert run.data.params["model"] == "isolation_forest" and "roc_auc" in run.data.metrics
    arts = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(r1.run_id)}
    assert {"bundle", "onnx", "report"} <= arts

    got = tracking.download_bundle("flows", "1", tmp_path / "dl", uri=tracking_uri)
    assert read(got).manifest["version"] == "1"

    capsys.readouterr()
    assert cli.main(["--tracking-uri", tracking_uri, "compare", "--metric", "roc_auc"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("run | name") and len(table) == 3


def test_check_data_reports_balance(datasets, capsys):
    assert cli.main(["check-data", "--dataset", "unsw_nb15_raw"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["rows"] == 3500 and s["attacks"] == 122


def test_evaluate_scores_a_shipped_bundle_on_raw_argus_records_as_the_node_does(datasets, shipped, flowtag, capsys):
    """The shipped supervised bundle on the raw Argus records of `UNSW-NB15_1.csv` (the layout a
    node sees; the partitioned file it was trained on was drawn from these captures and
    recomputes some features). The figures `evaluate` prints are the node's: `flowtag score` on
    the same file flags the same shares."""
    bundle = str(shipped["unsw-supervised"])
    assert cli.main(["evaluate", "--bundle", bundle, "--dataset", "unsw_nb15_raw"]) == 0
    r = json.loads(capsys.readouterr().out)["bundles"][bundle]
    assert r["test_rows"] == 3500 and r["test_attacks"] == 122
    assert r["roc_auc"] > 0.99 and r["fpr"] < 0.01 and r["recall"] > 0.95
    assert {"Exploits", "Reconnaissance", "DoS"} <= set(r["recall_by_family"])

    raw = datasets / "unsw-nb15" / "UNSW-NB15_1.head3500.csv"
    out = subprocess.run([str(flowtag), "score", "--model", bundle, "--format", "unsw", str(raw)], capture_output=True, check=True).stdout
    tagged = [json.loads(line) for line in out.splitlines()]
    flagged = np.array([t["anomaly"]["verdict"] == "anomalous" for t in tagged])
    label = np.array([int(t["label"]) for t in tagged])
    assert len(tagged) == 3500
    assert flagged[label == 0].mean() == pytest.approx(r["fpr"]) and flagged[label == 1].mean() == pytest.approx(r["recall"])


def test_evaluate_refuses_a_dataset_without_labels_or_without_the_bundles_fields(datasets, shipped, capsys):
    assert cli.main(["evaluate", "--bundle", str(shipped["flows-portable"]), "--dataset", "zeek_conn"]) == 2
    assert "no labels" in capsys.readouterr().err
    assert cli.main(["evaluate", "--bundle", str(shipped["cicids2017"]), "--dataset", "unsw_nb15_raw"]) == 2
    err = capsys.readouterr().err
    assert "lacks the bundle's fields" in err and "Flow Duration" in err


def test_overlap_finds_twins_only_in_the_other_class_of_training():
    frame = pd.DataFrame({"proto": ["tcp", "udp", "tcp", "tcp", "udp", "icmp", "udp"], "bytes": ["5", "7", "5", "9", "7", "1", "8"]})
    ds = Dataset(schema=Schema(name="generated"), frame=frame, y=np.array([0, 1, 1, 1, 0, 0, 1]), family=None, files=[])
    sp = splits.Split(train=np.array([0, 1]), valid=np.array([], dtype=int), test=np.array([2, 3, 4, 5, 6]))
    # row 2: an attack shaped like normal training row 0; row 3: same protocol, other bytes;
    # row 4: normal, shaped like attack row 1; row 5: nothing like it; row 6: attack, like no normal row.
    assert overlap.twins(ds, sp, ["proto", "bytes"]).tolist() == [True, False, True, False, False]
    assert overlap.twins(ds, sp, ["proto"]).tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match=r"shape columns \['sttl'\]"):
        overlap.twins(ds, sp, ["proto", "sttl"])


def test_overlap_rebuilds_a_shipped_bundles_split_and_its_errors(datasets, shipped, tmp_path, capsys):
    """`overlap` rebuilds the shipped supervised bundle's test split from its manifest: the errors
    it counts give back the false-positive rate and the recall per family the manifest recorded
    when the bundle was built."""
    bundle = shipped["unsw-supervised"]
    assert cli.main(["overlap", "--bundle", str(bundle), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    m = read(bundle).manifest["metrics"]
    rows = r["rows"]
    assert rows["normal"]["errors"] / rows["normal"]["rows"] == pytest.approx(m["fpr"])
    for fam, recall in m["recall_by_family"].items():
        assert 1 - rows[fam]["errors"] / rows[fam]["rows"] == pytest.approx(recall), fam
    assert sum(v["rows"] for v in rows.values()) == r["total"]["rows"] == read(bundle).manifest["training"]["rows"]["test"]
    assert 0 < r["total"]["errors_twins"] <= r["total"]["errors"] and 0 < r["total"]["twins"] < r["total"]["rows"]
    assert r["shape"][:3] == ["proto", "service", "state"]
    assert cli.main(["overlap", "--bundle", str(bundle)]) == 0
    assert "| Fuzzers |" in capsys.readouterr().out

    # A bundle whose split cannot be rebuilt (other data, other code) is refused, not misreported.
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["training"]["rows"]["test"] += 1
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["overlap", "--bundle", str(other)]) == 2
    assert "rebuilt split" in capsys.readouterr().err
