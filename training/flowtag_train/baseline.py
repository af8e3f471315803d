"""`flowtag-train baseline`: a bundle learned from a network's own records, without labels.

    flowtag-train baseline --format netflow --input archive/*.jsonl --out bundles/site-a
    flowtag-train baseline --format cicflowmeter --input flows.csv --out b --label Label --normal BENIGN

A normal-traffic model is only as good as the normal traffic it learned, and a network's normal
is its own. No schema file and no code change for a new data source: the columns are read from
the records and sorted by what they hold.

* Left out, by name: addresses (`...IPv4Address`, `src_ip`, `id.orig_h`, MACs), identifiers
  (`uid`, `Flow ID`, `...Id`), times (timestamps, flow start and end, uptimes), the source port
  (ephemeral); by value: text that looks like addresses or dates, text with too many distinct
  values to be a category, constants, nested objects (tags a tagged archive carries); and
  whatever `--drop` names. Every column left out is listed in the manifest with why.
* Numbers become numeric features (clipped to the training range, `log1p` when heavy-tailed);
  the destination port and text with few distinct values become categorical features. Every
  feature is optional: a record that lacks one is scored with the training median (or the
  unknown category), since one source's records vary (ICMP flows have no ports).
* Robust to a small share of attacks in the input: the model is fitted, the `--trim` share of
  training rows that score highest is set aside, and the model is fitted again without them.
* The threshold is set on held-back local records (`--holdout`, 20 %) for `--target-fpr`.
  With `--label COL --normal VALUE`, training and the threshold use normal rows only, and
  figures on the held-back normal rows and every other row are printed and kept in the manifest.

The output is an ordinary bundle (manifest with calibration, reference statistics and canary
rows; `signature` when `--private-key` is given) that `flowtag score` and the host run unchanged.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flowtag_export import bundle as bundle_io
from flowtag_export import manifest as manifest_io
from flowtag_export import signing
from flowtag_export.runtime import raw_scores
from flowtag_export.spec import DEFAULT_MISSING_TOKENS, FeatureSpec

from . import evaluate, features, models, pipeline
from .datasets import NESTED, Dataset, Schema, read_csv, read_json_lines, read_zeek

FORMATS = {"csv": "csv", "cicflowmeter": "csv", "json": "json", "netflow": "json", "zeek": "zeek"}
#: Text columns with at most this many distinct values are categories (or more, when the most
#: common `features.MAX_CATEGORIES` cover 95 % of the rows: UNSW-NB15's `proto`).
MAX_TEXT_CATEGORIES = 64

_ADDRESS = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MISSING = {t.lower() for t in DEFAULT_MISSING_TOKENS}


@dataclass
class BaselineConfig:
    format: str
    inputs: list[str]
    out: str
    model: str = "autoencoder"
    name: str | None = None
    version: str = "1"
    target_fpr: float = 0.01
    holdout: float = 0.2
    trim: float = 0.01
    drop: list[str] = field(default_factory=list)
    label: str | None = None
    normal: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 20261205
    params: dict = field(default_factory=dict)
    private_key: str | None = None


def tokens(name: str) -> list[str]:
    """A column name's words: `flowStartMilliseconds` -> flow, start, milliseconds; `id.orig_h`
    -> id, orig, h; `Flow IAT Mean` -> flow, iat, mean."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


_TIME_WORDS = {"ts", "time", "timestamp", "date", "start", "end", "first", "last", "seen", "uptime", "stime", "ltime"}
_ADDRESS_WORDS = {"ip", "ipv4", "ipv6", "addr", "address", "mac", "host", "h", "srcip", "dstip", "saddr", "daddr"}
_ID_WORDS = {"id", "uid", "uuid", "seq", "sequence", "flowid"}
_SOURCE_WORDS = {"src", "source", "orig", "s"}
_PORT_WORDS = {"port", "p", "sport", "dport", "dsport", "srcport", "dstport"}
_DEST_WORDS = {"dst", "destination", "resp", "d"}
_PORT_EXTRA = {"id", "transport", "tcp", "udp", "l4"}


def by_name(name: str) -> str | None:
    """Why a column is left out by its name alone, or None."""
    t = set(tokens(name))
    if t & _ADDRESS_WORDS:
        return "address"
    if t & _TIME_WORDS:
        return "time"
    if name.lower() in {"sport", "srcport"} or (t & _PORT_WORDS and t & _SOURCE_WORDS and t <= _SOURCE_WORDS | _PORT_WORDS | _PORT_EXTRA):
        return "source port (ephemeral)"
    if is_destination_port(name):
        return None  # Zeek's `id.resp_p` is a port, not an identifier
    if t & _ID_WORDS:
        return "identifier"
    return None


def is_destination_port(name: str) -> bool:
    """A port and nothing else (`ct_dst_sport_ltm`, a count, is not one)."""
    t = set(tokens(name))
    return name.lower() in {"dport", "dsport", "dstport"} or bool(t & _PORT_WORDS and t & _DEST_WORDS and t <= _DEST_WORDS | _PORT_WORDS | _PORT_EXTRA)


def is_protocol(name: str) -> bool:
    return bool(set(tokens(name)) & {"proto", "protocol"})


def read_records(paths: list[Path], fmt: str) -> tuple[pd.DataFrame, list[dict]]:
    """Every input file's records as one frame of strings (None where a record lacks a field),
    with each file's path, rows and sha256."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: {fmt!r} is not one of {sorted(FORMATS)}")
    frames, info = [], []
    for path in paths:
        kind = FORMATS[fmt]
        if kind == "csv":
            frame = read_csv(path, Schema(name="baseline"))
        elif kind == "zeek":
            frame = read_zeek(path)
        else:
            frame = read_json_lines(path, mark_nested=True)
        frames.append(frame)
        info.append({"path": path.name, "rows": len(frame), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    frame = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    return frame.astype(object).where(frame.notna(), None), info


def infer_columns(frame: pd.DataFrame, drop: list[str], label: str | None) -> tuple[list[str], list[str], dict[str, str]]:
    """(numeric, categorical, left out: column -> why)."""
    numeric, categorical, left_out = [], [], {}
    for col in frame.columns:
        values = frame[col]
        if col == label:
            continue
        if col in drop:
            left_out[col] = "--drop"
            continue
        if values.map(lambda v: v is NESTED).any():
            left_out[col] = "nested value"
            continue
        why = by_name(col)
        if why:
            left_out[col] = why
            continue
        present = values[values.map(lambda v: v is not None and str(v).strip().lower() not in _MISSING)]
        if len(present) == 0:
            left_out[col] = "no values"
            continue
        text = present.map(lambda v: str(v).strip())
        distinct = text.nunique()
        if distinct <= 1:
            left_out[col] = "constant"
            continue
        if is_destination_port(col) or is_protocol(col):
            categorical.append(col)
            continue
        as_numbers = pd.to_numeric(text, errors="coerce")
        if as_numbers.notna().mean() >= 0.98:
            numeric.append(col)
            continue
        sample = text.head(1000)
        if sample.map(lambda v: bool(_ADDRESS.match(v))).mean() >= 0.5:
            left_out[col] = "address values"
        elif sample.map(lambda v: bool(_DATE.match(v))).mean() >= 0.5:
            left_out[col] = "date values"
        elif distinct <= MAX_TEXT_CATEGORIES or text.value_counts().head(features.MAX_CATEGORIES).sum() >= 0.95 * len(text):
            categorical.append(col)  # few values, or a long tail behind a few common ones
        else:
            left_out[col] = f"text with {distinct} distinct values"
    return numeric, categorical, left_out


@dataclass
class BaselineResult:
    bundle_dir: Path
    metrics: dict
    features: list[str]
    left_out: dict[str, str]


def baseline(cfg: BaselineConfig) -> BaselineResult:
    paths = [Path(p) for p in cfg.inputs]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"--input: no such file: {', '.join(missing)}")
    if cfg.model not in models.UNSUPERVISED:
        raise ValueError(f"--model: {cfg.model!r} is not one of {sorted(models.UNSUPERVISED)}")
    if not 0 < cfg.target_fpr < 1 or not 0 < cfg.holdout < 1 or not 0 <= cfg.trim < 0.5:
        raise ValueError("--target-fpr and --holdout must be in (0, 1), --trim in [0, 0.5)")
    frame, files = read_records(paths, cfg.format)
    if cfg.label and cfg.label not in frame.columns:
        raise ValueError(f"--label: no column {cfg.label!r} (columns: {list(frame.columns)[:10]}...)")
    rng = np.random.default_rng(cfg.seed)
    if cfg.limit and len(frame) > cfg.limit:
        frame = frame.iloc[np.sort(rng.choice(len(frame), cfg.limit, replace=False))].reset_index(drop=True)
    numeric, categorical, left_out = infer_columns(frame, cfg.drop, cfg.label)
    if not numeric and not categorical:
        raise ValueError(f"no column can be a feature (left out: {left_out})")
    y = np.zeros(len(frame), dtype=np.int64)
    if cfg.label:
        normal = {str(v) for v in cfg.normal}
        y = (~frame[cfg.label].map(lambda v: str(v).strip()).isin(normal)).to_numpy(dtype=np.int64)
        if (y == 0).sum() == 0:
            raise ValueError(f"--normal: no row has {cfg.label} in {sorted(normal)}")
    name = cfg.name or Path(cfg.out).name
    schema = Schema(name=f"baseline-{cfg.format}", format=FORMATS[cfg.format], categorical=categorical,
                    drop=[c for c in frame.columns if c not in numeric + categorical])
    ds = Dataset(schema=schema, frame=frame.map(lambda v: "" if v is None else v), y=y, family=None, files=files)
    # Held back for the threshold (normal rows only, with labels); trained on the rest.
    normal_rows = np.flatnonzero(y == 0)
    held = np.sort(rng.choice(normal_rows, max(1, int(round(len(normal_rows) * cfg.holdout))), replace=False))
    train_rows = np.setdiff1d(normal_rows, held)
    if len(train_rows) < 50:
        raise ValueError(f"{len(train_rows)} training rows: give at least a few hundred records")
    spec = features.fit_spec(ds, train_rows, use_leaky=True, optional=set(numeric + categorical))
    X = spec.transform_frame(ds.frame)
    trained = models.fit(cfg.model, X[train_rows], y[train_rows], seed=cfg.seed, params=cfg.params)
    trimmed = 0
    if cfg.trim > 0:
        s = np.asarray(trained.score(X[train_rows]))
        keep = train_rows[s <= np.quantile(s, 1.0 - cfg.trim)]
        trimmed = int(len(train_rows) - len(keep))
        trained = models.fit(cfg.model, X[keep], y[keep], seed=cfg.seed, params=cfg.params)
        train_rows = keep
    model_bytes, output = trained.export(spec.width)
    held_scores = raw_scores(model_bytes, output, X[held])
    pipeline.check_parity(trained, X[held], held_scores)
    threshold = evaluate.threshold_for_fpr(held_scores, cfg.target_fpr)
    m: dict = {"held_back_fpr": float((held_scores >= threshold).mean())}
    attacks = np.flatnonzero(y == 1)
    if len(attacks):
        rows = np.concatenate([held, attacks])
        m.update(evaluate.metrics(y[rows], raw_scores(model_bytes, output, X[rows]), threshold))
    m["parity_sklearn_onnx"] = trained.extra["parity"]
    quantiles = manifest_io.calibration_quantiles(held_scores)
    reference = manifest_io.reference_statistics(spec, X[train_rows])
    canaries = manifest_io.canary_expectations(
        spec, manifest_io.synthesize_canaries(spec, features.raw_quantiles(spec, ds, train_rows), cfg.seed),
        lambda rows: raw_scores(model_bytes, output, rows), quantiles, threshold,
    )
    training = {
        "dataset": schema.name,
        "files": files,
        "rows": {"train": int(len(train_rows)), "trimmed": trimmed, "held_back": int(len(held)), "other": int(len(attacks))},
        "model": cfg.model,
        "params": trained.params,
        "target_fpr": cfg.target_fpr,
        "seed": cfg.seed,
        "left_out": left_out,
        "label": cfg.label,
        "code_revision": pipeline.code_revision(),
    }
    doc = manifest_io.build(
        name=name, version=cfg.version, kind=trained.kind, schema=schema.name, spec=spec, model_bytes=model_bytes, output=output,
        threshold=threshold, quantiles=quantiles, reference=reference, canaries=canaries, metrics=m, training=training,
    )
    out = bundle_io.write(cfg.out, model_bytes, doc)
    if cfg.private_key:
        signing.sign(out, cfg.private_key)
    return BaselineResult(Path(out), m, [f.name for f in spec.features], left_out)
