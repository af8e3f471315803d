"""onnxruntime as every Python consumer of a bundle runs it: one thread (the plugin's figures are
per core, and parity must not depend on thread scheduling) and scores read in batches from the
manifest's `output.name` and `output.column`, as float32, as the plugin sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .graph import INPUT

#: Rows per `run` call when scoring a whole array.
BATCH = 8192


def session(model: bytes | Path | str) -> ort.InferenceSession:
    """A single-threaded CPU session for a model's bytes or path."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    source = str(model) if isinstance(model, (Path, str)) else model
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def raw_scores(model_bytes: bytes, output: dict, X: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """The raw score of every row of `X`: column `output["column"]` of output `output["name"]`."""
    sess = session(model_bytes)
    names = [o.name for o in sess.get_outputs()]
    col = output.get("column", 0)
    parts = []
    for i in range(0, len(X), batch):
        res = dict(zip(names, sess.run(None, {INPUT: X[i : i + batch].astype(np.float32)})))
        v = res[output["name"]]
        parts.append(v.reshape(len(v), -1)[:, col])
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
