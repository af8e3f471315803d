"""Train / validation / test splits that do not leak.

Real flow data repeats itself: a third of UNSW-NB15's rows have an identical twin. A random split
puts twins on both sides and the test score measures memory. Here rows with identical feature
values form a group, and a group lands wholly in one split (stratified by label, so both classes
keep their shares). Duplicates stay in training, where they carry how common a flow is.

Held-out-family mode: every attack of one family goes to the test split and none to training or
validation, so the test measures what the model does on an attack it never saw, the honest figure
for anomaly detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .datasets import Dataset


@dataclass
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    holdout_family: str | None = None

    def sizes(self) -> dict:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def groups(ds: Dataset, columns: list[str]) -> np.ndarray:
    """A key per row; rows with identical values in `columns` share it."""
    return pd.util.hash_pandas_object(ds.frame[columns], index=False).to_numpy()


#: The fixed evaluation set's seed: rows whose group key falls in bucket 0 of `buckets`.
EVALUATION_SALT = 0x666C6F77746167


def evaluation_rows(ds: Dataset, columns: list[str], buckets: int) -> np.ndarray:
    """Rows of the fixed evaluation set: 1/`buckets` of the groups, chosen by their content alone.

    The choice depends on a row's feature values only (not on which rows were loaded, a sample,
    a seed or the order of files), so the set stays the same from one retraining to the next and
    grows with the data; identical rows always land on the same side. Retraining leaves these
    rows out of the candidate's training, validation and test splits and judges candidate and
    champion on them.
    """
    return np.flatnonzero(evaluation_mask(groups(ds, columns), buckets))


def evaluation_mask(keys: np.ndarray, buckets: int) -> np.ndarray:
    """Which group keys fall in the fixed evaluation set (see `evaluation_rows`)."""
    if buckets < 2:
        raise ValueError(f"eval_buckets must be at least 2, got {buckets}")
    mixed = (keys.astype(np.uint64) ^ np.uint64(EVALUATION_SALT)) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(33)) % np.uint64(buckets) == 0


#: Salt of `content_split`'s draw, independent of the evaluation set's.
SPLIT_SALT = 0x73706C697473


def content_split(keys: np.ndarray, *, eval_buckets: int, valid: float, test: float) -> np.ndarray:
    """`eval`, `test`, `valid` or `train` per row, from its group key alone: identical rows land
    in one split, a row keeps its split however the data is cut into files, chunks or Spark
    partitions, and each class gets the shares in expectation (the draw is uniform whatever
    the label). `eval` is the fixed evaluation set of `evaluation_rows`; the rest is drawn from
    a second mix of the key."""
    keys = keys.astype(np.uint64)
    mixed = (keys ^ np.uint64(SPLIT_SALT)) * np.uint64(0x9E3779B97F4A7C15)
    u = (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out = np.where(u < test, "test", np.where(u < test + valid, "valid", "train")).astype(object)
    out[evaluation_mask(keys, eval_buckets)] = "eval"
    return out


def split(ds: Dataset, columns: list[str], *, seed: int, valid: float = 0.2, test: float = 0.2, holdout_family: str | None = None) -> Split:
    if ds.y is None:
        raise ValueError("splitting needs labels")
    rng = np.random.default_rng(seed)
    keys = groups(ds, columns)
    y = ds.y
    held = np.zeros(len(y), dtype=bool)
    if holdout_family is not None:
        if ds.family is None:
            raise ValueError(f"{ds.schema.name} has no attack-family column for --holdout-family")
        held = ds.family == holdout_family
        if not held.any():
            known = sorted(set(ds.family[ds.y == 1]))
            raise ValueError(f"no attack family {holdout_family!r} (families: {known})")
    parts = {"train": [], "valid": [], "test": []}
    frame = pd.DataFrame({"key": keys, "y": y, "held": held})
    # A group's class is its majority label.
    by_group = frame.groupby("key").agg(y=("y", "mean"), held=("held", "any"))
    by_group["cls"] = (by_group.y >= 0.5).astype(int)
    for cls in (0, 1):
        g = by_group[(by_group.cls == cls) & ~by_group.held].index.to_numpy()
        g = g[rng.permutation(len(g))]
        n_test, n_valid = int(round(len(g) * test)), int(round(len(g) * valid))
        parts["test"].append(g[:n_test])
        parts["valid"].append(g[n_test : n_test + n_valid])
        parts["train"].append(g[n_test + n_valid :])
    parts["test"].append(by_group[by_group.held].index.to_numpy())
    index = {name: np.flatnonzero(np.isin(keys, np.concatenate(gs))) for name, gs in parts.items()}
    return Split(index["train"], index["valid"], index["test"], holdout_family)
