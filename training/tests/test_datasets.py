"""The loaders on the real files in `../shared/datasets`, with every quirk the datasets README
lists; where a quirk is not in a file, the test makes a temporary variant of a real file (never
committed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flowtag_train.datasets import Schema, load, normalize_family, read_csv
from flowtag_train.features import feature_columns, fit_spec

CIC = "cicids2017/original-subsets"


def test_unsw_partitioned_rows_labels_and_families(datasets):
    ds = load("unsw_nb15")
    assert len(ds) == 61749
    assert int((ds.y == 0).sum()) == 27750
    fams = set(ds.family)
    assert fams == {"Normal", "Generic", "Exploits", "Fuzzers", "DoS", "Reconnaissance", "Analysis", "Backdoor", "Shellcode", "Worms"}
    # Leakage guards: identifiers and the attack family never become features; TTLs only on request.
    numeric, categorical = feature_columns(ds, use_leaky=True)
    assert "id" not in numeric + categorical and "attack_cat" not in numeric + categorical and "label" not in numeric
    assert categorical == ["proto", "service", "state"]
    without, _ = feature_columns(ds, use_leaky=False)
    assert {"sttl", "dttl", "ct_state_ttl"} <= set(numeric) and not {"sttl", "dttl", "ct_state_ttl"} & set(without)


def test_unsw_raw_file_bom_header_and_renames(datasets):
    raw = (datasets / "unsw-nb15/UNSW-NB15_1.head3500.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"ct_src_ ltm" in raw.split(b"\n", 1)[0]
    ds = load("unsw_nb15_raw")
    assert len(ds) == 3500 and int(ds.y.sum()) == 122
    cols = set(ds.frame.columns)
    # The BOM is not part of the first name; `ct_src_ ltm` and the capitalised raw names map to
    # the partitioned file's names, so one model reads both.
    assert "srcip" in cols and "ct_src_ltm" in cols and {"spkts", "dpkts", "sinpkt", "smean"} <= cols
    assert not any(c.startswith("\ufeff") for c in cols)


def test_unsw_raw_file_without_header_uses_schema_columns(datasets, tmp_path):
    text = (datasets / "unsw-nb15/UNSW-NB15_1.head3500.csv").read_bytes().decode("utf-8-sig")
    body = text.split("\n", 1)[1]
    headerless = tmp_path / "UNSW-NB15_1.csv"
    headerless.write_text("".join(body.splitlines(keepends=True)[:500]))
    ds = load("unsw_nb15_raw", files=[str(headerless)])
    assert len(ds) == 500 and ds.frame["dstip"].iloc[0].count(".") == 3


def test_cicids_leading_spaces_crlf_infinity_and_duplicate_column(datasets):
    path = datasets / CIC / "Friday-Afternoon-DDos.head9998.csv"
    raw = path.read_bytes()
    assert raw.startswith(b" Destination Port") and b"\r\n" in raw[:2000] and b"Infinity" in raw
    frame = read_csv(path, Schema.load("cicids2017"))
    assert len(frame) == 9998
    assert "Flow Duration" in frame.columns and "Fwd Header Length.1" in frame.columns
    assert not any(c != c.strip() for c in frame.columns)
    assert not frame["Label"].str.endswith("\r").any()
    # Infinity / NaN become finite numbers through the feature spec's missing-value rule.
    ds = load("cicids2017", files=[str(path)])
    spec = fit_spec(ds, np.arange(len(ds)), use_leaky=True)
    X = spec.transform_frame(ds.frame)
    assert np.isfinite(X).all()
    names = [f.name for f in spec.features]
    assert "Fwd Header Length.1" not in names and "Flow Bytes/s" in names


def test_cicids_both_layouts_share_77_features(datasets):
    ml = load("cicids2017", files=[str(datasets / CIC / "Friday-Morning_Bot_balanced.csv")])
    tl = load("cicids2017", files=[str(datasets / CIC / "TrafficLabelling_PortScan_1000.csv")])
    f_ml = feature_columns(ml, use_leaky=True)[0]
    f_tl = feature_columns(tl, use_leaky=True)[0]
    assert f_ml == f_tl and len(f_ml) == 77
    assert "Source IP" not in f_tl and "Timestamp" not in f_tl


def test_cicids_dash_spellings_become_one_family(datasets, tmp_path):
    # The XSS file writes the dash as U+0096 (cp1252's 0x96 read as Latin-1); the WebAttacks file
    # as U+2013. A true cp1252 file (byte 0x96) is made from the XSS file here.
    xss = datasets / CIC / "TrafficLabelling_WebAttack_XSS_all652.csv"
    assert "Web Attack \u0096 XSS".encode() in xss.read_bytes()
    fam_u0096 = set(load("cicids2017", files=[str(xss)]).family)
    cp1252 = tmp_path / "xss-cp1252.csv"
    cp1252.write_bytes(xss.read_bytes().decode("utf-8").replace("\u0096", "\u2013").encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        cp1252.read_bytes().decode("utf-8")
    fam_cp1252 = set(load("cicids2017", files=[str(cp1252)]).family)
    web = load("cicids2017", files=[str(datasets / CIC / "Thursday-Morning_WebAttacks_balanced.csv")])
    assert fam_u0096 == fam_cp1252 == {"Web Attack - XSS"}
    assert "Web Attack - XSS" in set(web.family) and "Web Attack - Brute Force" in set(web.family)
    assert normalize_family("Web Attack \x96 Sql Injection") == normalize_family("Web Attack \u2013  Sql Injection") == "Web Attack - Sql Injection"


def test_bom_and_crlf_variants_read_the_same(datasets, tmp_path):
    src = datasets / CIC / "Friday-Morning_Bot_balanced.csv"
    lines = src.read_text().splitlines()[:300]
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(lines) + "\n")
    variant = tmp_path / "bom-crlf.csv"
    variant.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode())
    schema = Schema.load("cicids2017")
    a, b = read_csv(plain, schema), read_csv(variant, schema)
    assert list(a.columns) == list(b.columns) and a.equals(b)


@pytest.mark.parametrize("log,fmt", [("slips-test10-mixed/conn.log", "tsv"), ("slips-test9-mixed/conn.log", "json")])
def test_zeek_conn_logs_both_formats(datasets, log, fmt):
    path = datasets / "zeek" / log
    assert path.read_text().lstrip().startswith("{") == (fmt == "json")
    ds = load("zeek_conn", files=[str(path)])
    assert ds.y is None and len(ds) > 10
    # Renamed to the UNSW names the portable bundle reads; unset (`-`) is empty.
    assert {"dur", "spkts", "dpkts", "sbytes", "dbytes", "proto"} <= set(ds.frame.columns)
    assert "-" not in set(ds.frame["service"]) and ds.frame["service"].isna().any()


def test_a_new_dataset_is_a_schema_file(datasets, tmp_path):
    schema = {
        "name": "bot-only", "files": [f"{CIC}/Friday-Morning_Bot_balanced.csv"],
        "label": {"column": "Label", "normal": ["BENIGN"]}, "family": "Label",
        "drop": ["Label"],
    }
    path = tmp_path / "bot-only.json"
    path.write_text(json.dumps(schema))
    ds = load(str(path))
    assert len(ds) == 6554 and int(ds.y.sum()) == 1966
    path.write_text(json.dumps({**schema, "lable": "typo"}))
    with pytest.raises(ValueError, match="lable"):
        Schema.load(path)
    with pytest.raises(FileNotFoundError, match="known: cicids2017"):
        Schema.load("no-such-dataset")


def test_limit_keeps_a_stratified_sample(datasets):
    ds = load("unsw_nb15", limit=3000, seed=1)
    assert 2900 <= len(ds) <= 3100
    assert set(ds.family) >= {"Normal", "Generic", "Exploits", "Worms"}
    assert abs((ds.y == 0).mean() - 27750 / 61749) < 0.02


def test_an_edge_archive_is_training_data_like_the_csv_it_came_from(datasets, tmp_path, flowtag):
    """Records tagged by flowtag (what a node's file sink archives, tags and all) load through
    the dataset's schema as the CSV rows they came from: same columns, labels and values."""
    import subprocess

    from flowtag_train.datasets import load

    csv_path = datasets / "unsw-nb15" / "UNSW-NB15_1.head3500.csv"
    archive = tmp_path / "archive.jsonl"
    with open(archive, "w") as out:
        subprocess.run([str(flowtag), "score", "--model", "models/unsw-supervised", "--format", "unsw", str(csv_path)],
                       stdout=out, check=True, timeout=120)
    from_csv = load("unsw_nb15_raw", files=[str(csv_path)])
    from_archive = load("unsw_nb15_raw", files=[str(archive)])
    assert "anomaly" not in from_archive.frame.columns, "the tags are not data"
    assert list(from_archive.frame.columns) == list(from_csv.frame.columns)
    assert (from_archive.y == from_csv.y).all() and (from_archive.family == from_csv.family).all()
    compared = 0
    for col in from_csv.frame.columns:
        b = pd.to_numeric(from_csv.frame[col], errors="coerce").to_numpy()
        if np.isnan(b).all():
            assert (from_archive.frame[col].fillna("") == from_csv.frame[col]).all(), col
            continue
        a = pd.to_numeric(from_archive.frame[col], errors="coerce").to_numpy()
        assert np.allclose(a, b, rtol=1e-12, equal_nan=True), col
        compared += 1
    assert compared >= 30
