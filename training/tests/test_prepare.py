"""`flowtag-train prepare`: pandas and Spark give the same rows on the shared datasets, from CSV
with and without a header, Zeek logs, an edge archive of JSON lines partitioned by day and node,
and Parquet; the derived columns follow the rules training uses; training reads the output.

Spark runs in local mode with 2 MiB splits (the `spark` fixture), so every shared file larger
than that is read in several parts."""

from __future__ import annotations

import gzip
import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from flowtag_train import pipeline, splits
from flowtag_train.datasets import load
from flowtag_train.prepare import MANIFEST, Shares, load_prepared, prepare, read_folder, read_prepared


def both(dataset, tmp_path, spark, inputs=None, shares=None):
    a = prepare(engine="pandas", dataset=dataset, inputs=inputs, out=tmp_path / "pandas", shares=shares)
    b = prepare(engine="spark", dataset=dataset, inputs=inputs, out=tmp_path / "spark", shares=shares, spark=spark)
    return a, b, read_prepared(tmp_path / "pandas"), read_prepared(tmp_path / "spark")


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for c in a.columns:
        x, y = a[c].tolist(), b[c].tolist()
        assert x == y, f"column {c}: first difference at row {next(i for i, (p, q) in enumerate(zip(x, y)) if p != q)}"


@pytest.mark.parametrize("dataset", ["unsw_nb15", "unsw_nb15_raw", "cicids2017", "zeek_conn"])
def test_spark_prepares_the_rows_pandas_does(dataset, datasets, tmp_path, spark):
    """UNSW-NB15 with a header (11 MB: six splits), the raw header-less files, CICIDS2017's
    nine files with four different column sets (trimmed and repeated names), Zeek TSV logs."""
    ma, mb, a, b = both(dataset, tmp_path, spark)
    assert ma["rows"] == mb["rows"] and ma["columns"] == mb["columns"]
    assert len(a) == len(load(dataset))
    same_rows(a, b)
    assert set(a["_split"]) == {"train", "valid", "test", "eval"}


def test_derived_columns_follow_the_training_rules(datasets, tmp_path):
    """Labels, families and the fixed evaluation set are those `datasets.load` and
    `splits.evaluation_rows` give; identical rows share a key, a split and a count."""
    prepare(engine="pandas", dataset="unsw_nb15", inputs=None, out=tmp_path / "p")
    got = read_folder(tmp_path / "p")
    ds = load("unsw_nb15")
    want_eval = splits.evaluation_rows(ds, pipeline.evaluation_columns(ds), 5)
    keys = splits.groups(ds, pipeline.evaluation_columns(ds)).astype(np.uint64).view(np.int64)
    # Rows come back grouped by split; match them to the dataset's by key.
    assert sorted(got["_key"]) == sorted(keys)
    assert sorted(got.loc[got["_split"] == "eval", "_key"]) == sorted(keys[want_eval])
    by_key = pd.DataFrame({"_key": keys, "y": ds.y, "family": ds.family}).groupby("_key").agg(y=("y", "max"), family=("family", "first"), n=("y", "size"))
    g = got.groupby("_key").agg(y=("_label", "max"), family=("_family", "first"), n=("_label", "size"), copies=("_copies", "first"), parts=("_split", "nunique"))
    assert (g["parts"] == 1).all(), "identical rows in two splits"
    assert (g["copies"] == g["n"]).all()
    joined = g.join(by_key, rsuffix="_want")
    assert (joined["y"] == joined["y_want"]).all() and (joined["family"] == joined["family_want"]).all()
    assert joined["n"].max() > 1, "the data has duplicates to count"
    rest = got[got["_split"] != "eval"]
    share = (rest["_split"] == "test").mean()
    assert 0.17 < share < 0.23, share
    assert 0.17 < (got["_split"] == "eval").mean() < 0.23, "a fifth of the rows by default"


def test_an_edge_archive_partitioned_by_day_and_node(datasets, tmp_path, spark, flowtag):
    """Records a node archived (tagged JSON lines, in day=/node= folders, one file rotated and
    gzipped) prepare alike on both engines; the tags are not data."""
    src = datasets / "unsw-nb15" / "UNSW-NB15_1.head3500.csv"
    tagged = subprocess.run([str(flowtag), "score", "--model", "models/unsw-supervised", "--format", "unsw", str(src)],
                            capture_output=True, check=True, timeout=120).stdout.splitlines(keepends=True)
    archive = tmp_path / "archive"
    for i, (day, node) in enumerate([("2026-12-01", "a"), ("2026-12-01", "b"), ("2026-12-02", "a")]):
        d = archive / f"day={day}" / f"node={node}"
        d.mkdir(parents=True)
        data = b"".join(tagged[i::3])
        if node == "b":
            (d / "flows.jsonl.gz").write_bytes(gzip.compress(data))
        else:
            (d / "flows.jsonl").write_bytes(data)
    ma, mb, a, b = both("unsw_nb15_raw", tmp_path, spark, inputs=[str(archive)])
    assert len(ma["inputs"]) == len(mb["inputs"]) == 3 and all(len(i["sha256"]) == 64 for i in mb["inputs"])
    assert len(a) == 3500 and "anomaly" not in a.columns
    same_rows(a, b)


def test_parquet_inputs_and_bad_inputs(datasets, tmp_path, spark):
    """A prepared output is an input again (same rows, same keys); Parquet with a column that
    is not text, an output folder in use, or bad shares are refused with the reason."""
    prepare(engine="pandas", dataset="unsw_nb15_raw", inputs=None, out=tmp_path / "first")
    first = read_prepared(tmp_path / "first")
    flat = tmp_path / "flat"
    flat.mkdir()
    first.drop(columns=[c for c in first.columns if c.startswith("_")]).to_parquet(flat / "rows.parquet", index=False)
    _, _, a, b = both("unsw_nb15_raw", tmp_path, spark, inputs=[str(flat / "rows.parquet")])
    same_rows(a, b)
    same_rows(a, first)

    typed = tmp_path / "typed.parquet"
    pd.DataFrame({"srcip": ["1.2.3.4"], "sbytes": [12]}).to_parquet(typed)
    for engine in ("pandas", "spark"):
        with pytest.raises(ValueError, match="'sbytes'.*not text"):
            prepare(engine=engine, dataset="unsw_nb15_raw", inputs=[str(typed)], out=tmp_path / f"typed-{engine}", spark=spark)
    with pytest.raises(FileExistsError, match="not empty"):
        prepare(engine="pandas", dataset="unsw_nb15_raw", inputs=None, out=tmp_path / "first")
    with pytest.raises(ValueError, match="--valid"):
        prepare(engine="pandas", dataset="unsw_nb15_raw", inputs=None, out=tmp_path / "x", shares=Shares(valid=0.6, test=0.5))
    with pytest.raises(ValueError, match="--engine"):
        prepare(engine="dask", dataset="unsw_nb15_raw", inputs=None, out=tmp_path / "y")


def test_training_reads_a_prepared_folder_and_a_spark_sample(datasets, tmp_path, spark, tracking_uri):
    """`train --prepared` fits on the folder's train split (no evaluation row), and with a limit
    below its rows on a sample Spark draws, every family kept; MLflow records what was read."""
    prepare(engine="spark", dataset="unsw_nb15", inputs=None, out=tmp_path / "prep", spark=spark)
    full = load_prepared(tmp_path / "prep")
    assert not full.sampling["sampled"]
    assert len(full.split.train) + len(full.split.valid) + len(full.split.test) == len(full.dataset)
    got = load_prepared(tmp_path / "prep", limit=8000, seed=3, spark=spark)
    assert got.sampling["sampled"] and 6000 < len(got.dataset) < 11000
    assert set(got.dataset.family) == set(full.dataset.family), "a rare family was lost"
    held = load_prepared(tmp_path / "prep", holdout_family="Worms")
    assert (held.dataset.family[held.split.train] != "Worms").all() and (held.dataset.family[held.split.test] == "Worms").any()

    cfg = pipeline.TrainConfig(dataset="unsw_nb15", model="isolation_forest", name="from-prepared", prepared=str(tmp_path / "prep"),
                               limit=8000, out=str(tmp_path / "bundles"), tracking_uri=tracking_uri, params={"n_estimators": 50})
    r = pipeline.train(cfg)
    assert (r.bundle_dir / "manifest.json").exists()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(r.run_id)
    assert run.data.params["data.sampled"] == "True" and run.data.params["data.engine"] == "spark"
    assert json.loads((tmp_path / "prep" / MANIFEST).read_text())["engine"] == "spark"
