"""Parity between onnxruntime and `flowtag score` on real rows.

The Python side reads the rows with the training loader and featurizes them with the bundle's
spec (`FeatureSpec.transform_frame`); the Rust side reads the same file with its own decoder and
featurizer. Both must score every row alike (|a - b| <= 1e-5 * max(1, |b|)): this proves the two
featurizers, the two decoders and the two model runtimes agree. scikit-learn vs onnxruntime is
checked at training time and recorded in the manifest (`metrics.parity_sklearn_onnx`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import read
from .graph import INPUT
from .spec import FeatureSpec

TOLERANCE = 1e-5
REPO = Path(__file__).resolve().parents[2]


def onnx_raw(bundle_dir: Path, X: np.ndarray) -> np.ndarray:
    b = read(bundle_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(b.model_bytes, opts, providers=["CPUExecutionProvider"])
    out = b.manifest["output"]
    names = [o.name for o in sess.get_outputs()]
    scores = []
    for i in range(0, len(X), 8192):
        res = dict(zip(names, sess.run(None, {INPUT: X[i : i + 8192]})))
        v = res[out["name"]]
        scores.append(v.reshape(len(v), -1)[:, out.get("column", 0)])
    return np.concatenate(scores)


def flowtag_raw(bundle_dir: Path, data: Path, fmt: str, flowtag: Path, runtime: str = "native", plugin: Path | None = None) -> tuple[np.ndarray, list[dict]]:
    """Raw scores (NaN where unscored) and tags of every record `flowtag score` printed."""
    cmd = [str(flowtag), "score", "--model", str(bundle_dir), "--format", fmt, "--reasons", "none", "--runtime", runtime, str(data)]
    if plugin:
        cmd[3:3] = ["--plugin", str(plugin)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"flowtag score failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    tags = [json.loads(line)["anomaly"] for line in proc.stdout.splitlines()]
    raw = np.array([t.get("raw_score", np.nan) if t["verdict"] != "unscored" else np.nan for t in tags], dtype=np.float64)
    return raw, tags


def compare(bundle_dir: Path, frame, data: Path, fmt: str, flowtag: Path) -> dict:
    """ORT on `frame` (the rows of `data`, as the training loader reads them) vs `flowtag score`
    on `data`."""
    spec = FeatureSpec.from_manifest(read(bundle_dir).manifest)
    X = spec.transform_frame(frame)
    expected = onnx_raw(bundle_dir, X).astype(np.float64)
    got, tags = flowtag_raw(bundle_dir, data, fmt, flowtag)
    if len(got) != len(expected):
        raise AssertionError(f"flowtag tagged {len(got)} records, the file has {len(expected)} rows")
    unscored = int(np.isnan(got).sum())
    diff = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    worst = float(np.nanmax(diff)) if len(diff) else 0.0
    return {"rows": len(expected), "unscored": unscored, "max_relative_diff": worst, "worst_row": int(np.nanargmax(diff)) if len(diff) else -1}


def run_cli(bundle: str, data: str, rows: int, flowtag: str | None) -> int:
    """`flowtag-export parity`: needs the training package's loader for the bundle's schema."""
    from flowtag_train.datasets import Schema, load  # the loader lives with training

    b = read(bundle)
    schema = Schema.load(b.manifest["schema"])
    ds = load(schema, files=[data])
    frame = ds.frame.iloc[:rows]
    fmt = {"unsw_nb15": "unsw", "unsw_nb15_raw": "unsw", "cicids2017": "cicflowmeter", "zeek_conn": "zeek"}.get(schema.name, "csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        frame.to_csv(path, index=False)
        result = compare(Path(bundle), frame, path, fmt, Path(flowtag or REPO / "target/release/flowtag"))
    print(json.dumps(result, indent=2))
    return 0 if result["max_relative_diff"] <= TOLERANCE and result["unscored"] == 0 else 1
