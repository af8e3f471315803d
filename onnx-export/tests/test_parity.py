"""Parity of every shipped bundle on real rows: onnxruntime on the rows the training loader reads
vs `flowtag score` reading the same file with its own decoder and featurizer, at most 1e-5 apart
(relative to max(1, |score|)), no record unscored. scikit-learn vs onnxruntime was checked when
each bundle was built, on its validation and test rows, and is recorded in its manifest."""

from __future__ import annotations

import numpy as np
import pytest

from flowtag_export.bundle import read
from flowtag_export.parity import TOLERANCE, compare
from flowtag_train.datasets import load

CIC = "cicids2017/original-subsets"
# bundle -> [(schema the loader reads the file with, file, flowtag --format)]
CASES = {
    "unsw-supervised": [("unsw_nb15", "unsw-nb15/UNSW_NB15_dev.csv", "unsw"), ("unsw_nb15_raw", "unsw-nb15/UNSW-NB15_1.head3500.csv", "unsw")],
    "unsw-unsupervised": [("unsw_nb15", "unsw-nb15/UNSW_NB15_dev.csv", "unsw"), ("unsw_nb15_raw", "unsw-nb15/UNSW-NB15_1.head3500.csv", "unsw")],
    "flows-portable": [
        ("unsw_nb15", "unsw-nb15/UNSW_NB15_dev.csv", "unsw"),
        ("unsw_nb15_raw", "unsw-nb15/UNSW-NB15_1.head3500.csv", "unsw"),
        ("zeek_conn", "zeek/slips-test9-mixed/conn.log", "zeek"),
        ("zeek_conn", "zeek/slips-test10-mixed/conn.log", "zeek"),
    ],
    "cicids2017": [
        ("cicids2017", f"{CIC}/Tuesday_Working_balanced.csv", "cicflowmeter"),
        ("cicids2017", f"{CIC}/Friday-Afternoon-DDos.head9998.csv", "cicflowmeter"),
        ("cicids2017", f"{CIC}/TrafficLabelling_WebAttack_XSS_all652.csv", "cicflowmeter"),
    ],
}


#: The web bundles' parity (onnxruntime, native, WASM, on every test request) is in test_text_parity.py.
WEB = {"web-site", "web-attacks"}


def test_every_shipped_bundle_has_a_parity_case(shipped):
    assert set(shipped) == set(CASES) | WEB


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnxruntime_and_flowtag_score_agree_on_real_rows(datasets, flowtag, shipped, name):
    rows = 0
    for schema, rel, fmt in CASES[name]:
        path = datasets / rel
        frame = load(schema, files=[str(path)]).frame
        r = compare(shipped[name], frame, path, fmt, flowtag)
        assert r["unscored"] == 0, (rel, r)
        assert r["max_relative_diff"] <= TOLERANCE, (rel, r)
        rows += r["rows"]
    assert rows >= 10_000


@pytest.mark.parametrize("name", sorted(CASES))
def test_sklearn_parity_was_checked_when_built(shipped, name):
    p = read(shipped[name]).manifest["metrics"]["parity_sklearn_onnx"]
    assert p["rows"] >= 10_000 and p["max_relative_diff"] <= TOLERANCE
    assert np.isfinite(p["max_relative_diff"])
