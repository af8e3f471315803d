"""`flowtag-train baseline`: columns sorted by what they hold, a bundle from unlabelled records
that `flowtag score` runs, figures with `--label`, and errors that name the problem."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pandas as pd
import pytest

from flowtag_export.bundle import read
from flowtag_train import cli
from flowtag_train.baseline import BaselineConfig, baseline, by_name, infer_columns


def test_columns_are_sorted_by_name_and_value():
    n = 200
    frame = pd.DataFrame({
        "uid": [f"C{i:05d}x" for i in range(n)],
        "id.orig_h": ["10.0.0.1"] * n,
        "id.orig_p": [str(40000 + i) for i in range(n)],
        "id.resp_p": [str([53, 80, 443][i % 3]) for i in range(n)],
        "ts": [str(1700000000 + i) for i in range(n)],
        "proto": ["tcp", "udp"] * (n // 2),
        "duration": [str(i / 10) for i in range(n)],
        "orig_bytes": [str(i * 7) for i in range(n)],
        "peer": [f"host-{i}" for i in range(n)],
        "when": [f"2026-12-05T10:{i % 60:02d}:00" for i in range(n)],
        "talker": [f"192.0.2.{i % 250}" for i in range(n)],
        "const": ["1"] * n,
        "ct_dst_sport_ltm": [str(i % 4) for i in range(n)],
        "label": ["normal"] * n,
        "extra": ["x", "y"] * (n // 2),
    })
    numeric, categorical, left_out = infer_columns(frame, drop=["extra"], label="label")
    assert numeric == ["duration", "orig_bytes", "ct_dst_sport_ltm"]
    assert categorical == ["id.resp_p", "proto"]
    assert left_out == {
        "uid": "identifier", "id.orig_h": "address", "id.orig_p": "source port (ephemeral)", "ts": "time",
        "peer": "text with 200 distinct values", "when": "date values", "talker": "address values", "const": "constant",
        "extra": "--drop",
    }
    assert by_name("observationDomainId") == "identifier" and by_name("flowEndSysUpTime") == "time"
    assert by_name("flowDurationMilliseconds") is None and by_name("destinationTransportPort") is None


def test_a_baseline_from_unsw_normal_rows_flags_its_attacks(datasets, tmp_path, flowtag):
    data = datasets / "unsw-nb15" / "UNSW_NB15_dev.csv"
    out = tmp_path / "site"
    r = baseline(BaselineConfig(format="csv", inputs=[str(data)], out=str(out), model="isolation_forest", label="label", normal=["0"],
                                drop=["attack_cat"], limit=8000))
    assert r.left_out == {"id": "identifier", "attack_cat": "--drop"}
    assert "proto" in r.features and "sttl" in r.features
    assert 0.005 <= r.metrics["held_back_fpr"] <= 0.02
    assert r.metrics["roc_auc"] >= 0.7, r.metrics
    b = read(out)
    assert b.manifest["training"]["rows"]["other"] > 1000 and b.manifest["training"]["left_out"] == r.left_out
    assert not any(f["required"] for f in b.manifest["features"])
    # The bundle runs unchanged in the plugin: its canaries check at load, every record is scored.
    scored = subprocess.run([str(flowtag), "score", "--model", str(out), "--format", "unsw", str(datasets / "unsw-nb15" / "UNSW-NB15_1.head3500.csv")],
                            capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr
    assert "0 unscored" in scored.stderr
    assert len(scored.stdout.splitlines()) == 3500


def test_errors_name_the_problem(tmp_path, capsys):
    data = tmp_path / "flows.jsonl"
    data.write_text("".join(json.dumps({"a": i, "b": "x", "anomaly": {"score": 0.1}}) + "\n" for i in range(100)))
    cases = [
        (["--format", "parquet"], "invalid choice"),
        (["--format", "json", "--label", "b"], "--label needs --normal"),
        (["--format", "json", "--label", "nope", "--normal", "1"], "--label: no column 'nope'"),
        (["--format", "json", "--label", "b", "--normal", "y"], "--normal: no row has b in ['y']"),
        (["--format", "json", "--drop", "a"], "no column can be a feature"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) if "invalid choice" in message else contextlib.nullcontext():
            code = cli.main(["baseline", "--input", str(data), "--out", str(tmp_path / "b"), *args])
            assert code == 2
        assert message in capsys.readouterr().err, args
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n[1, 2]\n')
    assert cli.main(["baseline", "--format", "json", "--input", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "bad.jsonl:2: not a JSON object" in capsys.readouterr().err
