"""Batch scoring: the plugin's Python bindings (`flowtag_native`) and `flowtag-train score-batch`
on Spark write the bytes `flowtag score` writes, on real rows, with the inputs cut into splits."""

from __future__ import annotations

import gzip
import subprocess
import sys

# scripts/setup.sh builds bindings/python (flowtag_native) into .venv: without it this fails.
import flowtag_native
import pytest

from flowtag_train import spark as spark_mod


def score_cli(flowtag, bundle, fmt, path) -> bytes:
    return subprocess.run([str(flowtag), "score", "--model", str(bundle), "--format", fmt, str(path)], capture_output=True, check=True, timeout=300).stdout


def test_the_bindings_tag_as_flowtag_score(datasets, shipped, flowtag):
    """Every UNSW-NB15 row through `Scorer`, cut into streams at odd places (a stream that
    starts inside the file primed with its header), gives `flowtag score`'s output."""
    path = datasets / "unsw-nb15" / "UNSW_NB15_dev.csv"
    want = score_cli(flowtag, shipped["unsw-supervised"], "unsw", path)
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    s = flowtag_native.Scorer(str(shipped["unsw-supervised"]), format="unsw")
    assert s.model_id == "unsw-supervised@1"
    cuts = [0, 1, 2, 999, 20_001, 20_002, 45_555, len(lines)]
    got = []
    for a, b in zip(cuts, cuts[1:]):
        s.new_stream([lines[0]] if a > 0 else [])
        got.append(s.score(lines[a:b]))
    assert b"".join(got) == want
    records, anomalous, unscored, malformed = s.counts()
    assert records == len(lines) - 1 == 61_749 and anomalous > 20_000 and unscored == 0 and malformed == 0


def test_the_bindings_refuse_what_flowtag_score_refuses(shipped, tmp_path):
    with pytest.raises(ValueError, match="format: unknown format"):
        flowtag_native.Scorer(str(shipped["unsw-supervised"]), format="netflow9")
    with pytest.raises(ValueError, match="reasons"):
        flowtag_native.Scorer(str(shipped["unsw-supervised"]), reasons="some")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="bundle has no model.onnx"):
        flowtag_native.Scorer(str(tmp_path))
    s = flowtag_native.Scorer(str(shipped["unsw-supervised"]), format="unsw")
    out = s.score([b"1,2,3", b"9,9"])
    assert out.count(b"\n") == 2 and b"decode_error" in out and s.counts()[3] == 2, "a bad line goes on with its error"


@pytest.mark.parametrize(
    "bundle, fmt, source",
    [
        ("unsw-supervised", "unsw", "unsw-nb15/UNSW_NB15_dev.csv"),
        ("unsw-unsupervised", "unsw", "unsw-nb15/UNSW-NB15_1.head3500.csv"),
        ("cicids2017", "csv", "cicids2017/original-subsets/Tuesday_Working_balanced.csv"),
    ],
)
def test_spark_scores_archives_byte_for_byte_as_flowtag_score(bundle, fmt, source, datasets, shipped, flowtag, spark, tmp_path):
    """UNSW-NB15 with a header (61,749 rows in six splits), the header-less raw file, and
    CICIDS2017 (46,117 rows, names with spaces, eight splits): the part files, concatenated,
    are `flowtag score`'s output."""
    path = datasets / source
    want = score_cli(flowtag, shipped[bundle], fmt, path)
    done = spark_mod.score_batch(spark, bundle=shipped[bundle], fmt=fmt, inputs=[str(path)], out=str(tmp_path / "out"), ordered=True)
    got = b"".join(p.read_bytes() for p in spark_mod.part_files(tmp_path / "out"))
    assert done["records"] == want.count(b"\n") and done["model"] == f"{bundle}@1"
    assert got == want


def test_spark_scores_several_files_in_order_with_their_bytes_kept(datasets, shipped, flowtag, spark, tmp_path):
    """Files in name order, each with its own header, one gzipped; CRLF line ends; a line that is not UTF-8
    (CICIDS2017's Windows-1252 dash) and a line that cannot be decoded go on tagged as
    `flowtag score` tags them; unordered output holds the same lines. The same bundle path added
    twice to one Spark session is copied under its content hash each time."""
    src = (datasets / "cicids2017/original-subsets/Thursday-Morning_WebAttacks_balanced.csv").read_bytes().split(b"\n")
    header, rows = src[0], [r for r in src[1:] if r]
    cp1252 = rows[5].replace(b"Web Attack", b"Web Attack \x96", 1) if b"Web Attack" in rows[5] else rows[5] + b"\x96"
    files = {
        "a.csv": b"\n".join([header, *rows[:3000], cp1252, b"1,2"]) + b"\n",
        "b.csv": b"\r\n".join([header, *rows[3000:5000]]) + b"\r\n",
        "c.csv.gz": b"\n".join([header, *rows[5000:]]) + b"\n",
    }
    folder, plain = tmp_path / "in", tmp_path / "plain"
    folder.mkdir()
    plain.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        (plain / name).write_bytes(data)
    want = b"".join(score_cli(flowtag, shipped["cicids2017"], "csv", plain / n) for n in sorted(files))
    spark_mod.score_batch(spark, bundle=shipped["cicids2017"], fmt="csv", inputs=[str(folder)], out=str(tmp_path / "out"), ordered=True)
    got = b"".join(p.read_bytes() for p in spark_mod.part_files(tmp_path / "out"))
    assert got == want
    assert got.count(b"\n") == len(rows) + 2 and b"decode_error" in got
    spark_mod.score_batch(spark, bundle=shipped["cicids2017"], fmt="csv", inputs=[str(folder)], out=str(tmp_path / "loose"))
    loose = b"".join(p.read_bytes() for p in spark_mod.part_files(tmp_path / "loose"))
    assert sorted(loose.splitlines()) == sorted(want.splitlines())


def test_score_batch_command(datasets, shipped, flowtag, tmp_path):
    """The command line, as a user runs it (its own Spark session, local[2])."""
    path = datasets / "unsw-nb15" / "UNSW-NB15_1.head3500.csv"
    r = subprocess.run(
        [sys.executable, "-m", "flowtag_train.cli", "score-batch", "--bundle", str(shipped["unsw-unsupervised"]), "--format", "unsw", "--input", str(path),
         "--out", str(tmp_path / "out"), "--reasons", "all", "--ordered"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    want = subprocess.run([str(flowtag), "score", "--model", str(shipped["unsw-unsupervised"]), "--format", "unsw", "--reasons", "all", str(path)],
                          capture_output=True, check=True, timeout=300).stdout
    assert b"".join(p.read_bytes() for p in spark_mod.part_files(tmp_path / "out")) == want
    bad = subprocess.run([sys.executable, "-m", "flowtag_train.cli", "score-batch", "--bundle", str(tmp_path), "--format", "unsw", "--input", str(path), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "bundle has no" in bad.stderr and "Traceback" not in bad.stderr
