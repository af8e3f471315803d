"""Parity between onnxruntime and `flowtag score` on real rows.

The Python side featurizes rows (as the training loader reads them; `flowtag-train parity` loads
them) with the bundle's spec (`FeatureSpec.transform_frame`); the Rust side reads the same file
with its own decoder and featurizer. Both must score every row alike
(|a - b| <= 1e-5 * max(1, |b|)): this proves the two featurizers, the two decoders and the two
model runtimes agree. scikit-learn vs onnxruntime is
checked at training time and recorded in the manifest (`metrics.parity_sklearn_onnx`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from .bundle import read
from .runtime import raw_scores
from .spec import FeatureSpec

TOLERANCE = 1e-5
REPO = Path(__file__).resolve().parents[2]


def onnx_raw(bundle_dir: Path, X: np.ndarray) -> np.ndarray:
    """onnxruntime's raw scores of the feature rows `X` through a bundle's graph."""
    b = read(bundle_dir)
    return raw_scores(b.model_bytes, b.manifest["output"], X)


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
