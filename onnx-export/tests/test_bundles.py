"""Bundles: the shipped manifests, tar round trips, Ed25519 signing, the export CLI, and the
plugin's golden fixtures being what the exporter makes today."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import onnx
import pytest

from flowtag_export import cli
from flowtag_export.bundle import MANIFEST, read, to_tar
from flowtag_export.golden import write_fixtures
from flowtag_export.manifest import sha256, validate
from flowtag_export.signing import keygen, sign, verify

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["cicids2017", "flows-portable", "unsw-supervised", "unsw-unsupervised"])
def test_shipped_manifest_is_complete_and_pins_its_model(shipped, name):
    b = read(shipped[name])
    m = b.manifest
    validate(m)
    assert m["name"] == name and m["model_sha256"] == sha256(b.model_bytes)
    model = onnx.load_from_string(b.model_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == m["input"]["width"]
    assert m["output"]["name"] in {o.name for o in model.graph.output}
    # No ai.onnx.ml Scaler or ZipMap: scaling is plain arithmetic, forests are one compact node.
    ops = [n.op_type for n in model.graph.node]
    assert "Scaler" not in ops and "ZipMap" not in ops
    if m["kind"] == "classifier":
        assert ops.count("TreeEnsembleClassifier") + ops.count("TreeEnsembleRegressor") + ops.count("TreeEnsemble") == 1
    q = m["calibration"]["quantiles"]
    assert len(q) >= 100 and q == sorted(q)
    assert len(m["reference"]) == len(m["features"])
    # A floor that catches a broken model, not the figures (models/README.md has those): the
    # portable bundle's test split mixes two networks' normal traffic (0.80 there).
    assert 0.0 < m["metrics"]["fpr"] < 0.05 and m["metrics"]["roc_auc"] > (0.75 if name == "flows-portable" else 0.9)
    t = m["training"]
    assert t["dataset"] == m["schema"] and t["files"] and t["code_revision"] and t["seed"]
    assert len(m["canaries"]) >= 4
    for c in m["canaries"]:
        assert set(c) >= {"record", "raw_score", "score", "verdict"}
    converting = {e["name"] for f in m["features"] for e in f["fields"] if isinstance(e, dict)}
    if converting:
        # One canary writes converted values under their aliases, so consumers check the conversions.
        assert any(converting & set(c["record"]) for c in m["canaries"]), converting


def test_canaries_are_not_dataset_rows(datasets, shipped):
    # Canaries are synthesised from feature statistics; no canary record equals a dataset row.
    import pandas as pd

    frame = pd.read_csv(datasets / "unsw-nb15/UNSW_NB15_dev.csv", dtype=str)
    for name in ("unsw-supervised", "unsw-unsupervised", "flows-portable"):
        for c in read(shipped[name]).manifest["canaries"]:
            rec = {k: str(v) for k, v in c["record"].items()}
            cols = [k for k in rec if k in frame.columns]
            hit = frame[cols].eq(pd.Series({k: rec[k] for k in cols})).all(axis=1)
            assert not hit.any(), (name, rec)


def test_tar_round_trip(shipped, tmp_path):
    tar = to_tar(shipped["flows-portable"], tmp_path / "b.tar")
    a, b = read(shipped["flows-portable"]), read(tar)
    assert a.manifest == b.manifest and a.model_bytes == b.model_bytes


def test_sign_verify_and_refusals(shipped, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped["flows-portable"], bundle)
    keygen(tmp_path / "k", tmp_path / "k.pub")
    keygen(tmp_path / "other", tmp_path / "other.pub")
    assert oct((tmp_path / "k").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="unsigned"):
        verify(bundle, tmp_path / "k.pub")
    sign(bundle, tmp_path / "k")
    verify(bundle, tmp_path / "k.pub")
    with pytest.raises(ValueError, match="does not match"):
        verify(bundle, tmp_path / "other.pub")
    m = json.loads((bundle / MANIFEST).read_text())
    m["threshold"] = 0.5
    (bundle / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="does not match"):
        verify(bundle, tmp_path / "k.pub")
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        verify(bundle, tmp_path / "k")


def test_cli_keygen_sign_verify_inspect(shipped, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped["unsw-supervised"], bundle)
    assert cli.main(["keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")]) == 0
    assert cli.main(["sign", str(bundle), "--key", str(tmp_path / "k")]) == 0
    assert cli.main(["verify", str(bundle), "--public-key", str(tmp_path / "k.pub")]) == 0
    (bundle / "manifest.sig").unlink()
    assert cli.main(["verify", str(bundle), "--public-key", str(tmp_path / "k.pub")]) == 1
    capsys.readouterr()
    assert cli.main(["inspect", str(bundle)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "unsw-supervised" and len(summary["features"]) == 39


def test_golden_fixtures_are_up_to_date(tmp_path):
    """The plugin's Rust tests compare against these files: they must be what the exporter
    writes today (regenerate with `make fixtures`)."""
    write_fixtures(tmp_path)
    committed = REPO / "plugin/tests/fixtures"

    def differing(cmp: filecmp.dircmp) -> list[str]:
        out = cmp.diff_files + cmp.left_only + cmp.right_only
        for sub in cmp.subdirs.values():
            out += differing(sub)
        return out

    assert differing(filecmp.dircmp(tmp_path, committed)) == []
