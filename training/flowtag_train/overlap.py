"""Where attacks and normal traffic share a flow's shape: what a bundle's errors are made of.

A flow's *shape* is a few columns that describe it without timing: protocol, service, state,
packets and bytes each way, TTLs (the schema's `shape` key, or `--shape`). A test row has a
*twin* when a training row of the other class has the same shape. Such a row differs from
training traffic of the other class only in the remaining features (durations, jitter,
inter-packet times, connection counts), so no model of these features separates it as easily;
on UNSW-NB15 half of the supervised bundle's errors are twins, and the families a normal-only
model ranks worst are the ones that are mostly twins of normal flows.

`flowtag-train overlap --bundle models/unsw-supervised` rebuilds the bundle's own split from its
manifest (dataset, seed, TTL setting, held-out family; the split sizes must match) and prints, per
class and attack family: test rows, the share with a twin, errors at the bundle's threshold, the
errors that are twins, and the family's ROC-AUC against the normal test rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from flowtag_export import bundle as bundle_io
from flowtag_export.parity import onnx_raw
from flowtag_export.spec import FeatureSpec

from . import features, splits
from .datasets import Dataset, load

NORMAL = "normal"


def twins(ds: Dataset, sp: splits.Split, shape: list[str]) -> np.ndarray:
    """For each test row: does a training row of the other class have the same shape?"""
    missing = [c for c in shape if c not in ds.frame.columns]
    if missing:
        raise ValueError(f"{ds.schema.name}: shape columns {missing} are not in the data")
    keys = splits.groups(ds, shape)
    y = ds.y
    by_class = [set(keys[sp.train[y[sp.train] == c]]) for c in (0, 1)]
    return np.array([k in by_class[1 - c] for k, c in zip(keys[sp.test], y[sp.test])], dtype=bool)


def table(ds: Dataset, sp: splits.Split, shape: list[str], scores: np.ndarray, threshold: float) -> dict:
    """Per class and attack family of the test split: rows, twins, errors at `threshold`."""
    y = ds.y[sp.test]
    family = ds.family[sp.test] if ds.family is not None else np.where(y == 1, "attack", NORMAL)
    group = np.where(y == 0, NORMAL, family.astype(str))
    twin = twins(ds, sp, shape)
    wrong = (scores >= threshold).astype(int) != y
    normal = scores[y == 0]
    rows = {}
    for g in [NORMAL] + sorted(set(group[y == 1])):
        m = group == g
        row = {"rows": int(m.sum()), "twins": int(twin[m].sum()), "errors": int(wrong[m].sum()), "errors_twins": int((wrong & twin)[m].sum())}
        if g != NORMAL and len(normal):
            row["roc_auc"] = float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(m.sum())], np.r_[normal, scores[m]]))
        rows[g] = row
    return {
        "shape": shape,
        "rows": rows,
        "total": {"rows": int(len(y)), "twins": int(twin.sum()), "errors": int(wrong.sum()), "errors_twins": int((wrong & twin).sum())},
    }


def bundle_split(manifest: dict, ds: Dataset) -> splits.Split:
    """The split the bundle was trained and tested on, rebuilt from its manifest."""
    t = manifest.get("training") or {}
    if "seed" not in t or "rows" not in t:
        raise ValueError("the manifest's `training` block lacks `seed` or `rows`: the bundle's split cannot be rebuilt")
    # The columns the split grouped rows by: the bundle's features, in the data's order.
    names = [f["name"] for f in manifest["features"]]
    numeric, categorical = features.feature_columns(ds, use_leaky=bool(t.get("use_leaky", True)), only=names)
    sp = splits.split(ds, numeric + categorical, seed=int(t["seed"]), holdout_family=t.get("holdout_family"))
    if sp.sizes() != t["rows"]:
        raise ValueError(f"the rebuilt split {sp.sizes()} is not the bundle's {t['rows']}: other data or other code than it was trained with")
    return sp


def for_bundle(bundle_dir: Path, shape: list[str] | None = None, files: list[str] | None = None) -> dict:
    manifest = bundle_io.read(bundle_dir).manifest
    t = manifest.get("training") or {}
    if "dataset" not in t:
        raise ValueError(f"{bundle_dir}: the manifest names no training dataset")
    ds = load(t["dataset"], files=files)
    if ds.y is None:
        raise ValueError(f"{bundle_dir}: dataset {t['dataset']!r} has no labels")
    shape = shape or ds.schema.shape
    if not shape:
        raise ValueError(f"dataset {t['dataset']!r} names no `shape` columns in its schema: give --shape")
    sp = bundle_split(manifest, ds)
    spec = FeatureSpec.from_manifest(manifest)
    scores = onnx_raw(bundle_dir, spec.transform_frame(ds.frame.iloc[sp.test])).astype(np.float64)
    return {"bundle": str(bundle_dir), "dataset": t["dataset"], **table(ds, sp, shape, scores, float(manifest["threshold"]))}


def markdown(result: dict) -> str:
    lines = [
        f"{result['bundle']} on its test split of {result['dataset']}; shape: {', '.join(result['shape'])}",
        "",
        "| class | test rows | with a twin | errors | errors with a twin | ROC-AUC against normal |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in [*result["rows"].items(), ("all", result["total"])]:
        auc = f"{r['roc_auc']:.3f}" if "roc_auc" in r else ""
        share = r["twins"] / r["rows"] if r["rows"] else 0.0
        lines.append(f"| {name} | {r['rows']} | {r['twins']} ({share:.1%}) | {r['errors']} | {r['errors_twins']} | {auc} |")
    return "\n".join(lines)
