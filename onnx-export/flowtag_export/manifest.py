"""Bundle manifests (format 1): calibration, reference statistics, canary rows, the document.

See `docs/bundle-format.md` for every key. The plugin refuses a manifest that breaks a rule
stated there; :func:`validate` here applies the same structural rules before a bundle is written.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import hashlib
import math
from typing import Any

import numpy as np

from . import FORMAT
from .spec import FeatureSpec, JsonNumber

KINDS = ("isolation_forest", "autoencoder", "classifier", "novelty")
#: Calibration resolution: quantiles at 0, 1/K, ..., 1 of normal validation scores.
CALIBRATION_STEPS = 1000
#: Floor for reference standard deviations, so a feature constant on normal traffic still
#: yields a finite deviation when it moves.
MIN_STD = 1e-3


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def calibration_quantiles(normal_scores: np.ndarray, steps: int = CALIBRATION_STEPS) -> list[float]:
    """Score quantiles of normal traffic, from which a score maps to a percentile."""
    s = np.asarray(normal_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise ValueError("calibration needs at least one finite normal score")
    return [float(v) for v in np.quantile(s, np.linspace(0.0, 1.0, steps + 1))]


def calibrate(raw: float, quantiles: list[float]) -> float:
    """Percentile of `raw` among normal traffic, linear between quantiles; the plugin computes
    the same (the fraction of normal traffic scoring at most `raw`)."""
    k = len(quantiles) - 1
    if raw < quantiles[0]:
        return 0.0
    if raw >= quantiles[k]:
        return 1.0
    i = bisect.bisect_right(quantiles, raw) - 1
    lo, hi = quantiles[i], quantiles[i + 1]
    frac = (raw - lo) / (hi - lo) if hi > lo else 0.0
    return (i + frac) / k


def reference_statistics(spec: FeatureSpec, X_normal: np.ndarray) -> list[dict]:
    """Per feature, what normal traffic looks like in model-input space: mean and std of a
    numeric column; frequencies of each category (and the unknown bucket)."""
    refs, col = [], 0
    for feat in spec.features:
        block = X_normal[:, col : col + feat.width].astype(np.float64)
        col += feat.width
        if feat.type == "numeric":
            refs.append({"mean": float(block.mean()), "std": float(max(block.std(), MIN_STD))})
        elif feat.type == "text":
            refs.append({"mean": [float(v) for v in block.mean(axis=0)], "std": [float(v) for v in block.std(axis=0)]})
        elif feat.encoding == "onehot":
            refs.append({"frequencies": [float(v) for v in block.mean(axis=0)]})
        else:
            codes = block[:, 0].astype(np.int64)
            freq = np.bincount(codes, minlength=len(feat.categories) + 1) / max(len(codes), 1)
            refs.append({"frequencies": [float(v) for v in freq]})
    return refs


#: Text canaries, written here (never rows of a dataset): ordinary requests and the encodings and
#: attacks a text featurizer must read the same on every side.
TEXT_CANARIES = {
    "target": [
        "/", "/index.html", "/shop/cart.php?item=42&qty=3", "/search?q=red+shoes&page=2",
        "/login.jsp?user=admin%27--&pass=x", "/static/../../etc/passwd", "/a?x=%253Cscript%253Ealert(1)%253C/script%253E",
        "/api/v1/users/1234?fields=name,email&sort=-created", "/%c0%af%u0041?%zz=%4&&b",
    ],
    "form": [
        "", "user=alice&pass=secret", "q=1+union+select+password+from+users", "comment=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E",
        "a=1&b=2&c=%E2%82%AC",
    ],
}


def synthesize_canaries(spec: FeatureSpec, raw_quantiles: dict[str, list[float]], seed: int, n: int = 8) -> list[dict]:
    """Canary records built from per-feature statistics, never from dataset rows: each numeric
    field takes a value from its feature's quantiles (independently per field, so no record
    repeats a real one), each categorical a known category; the last canaries also carry a
    missing-value token, a number written as a string, and an unknown category."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        rec: dict[str, Any] = {}
        for feat in spec.features:
            key = feat.fields[0]
            if feat.type == "numeric":
                qs = raw_quantiles.get(feat.name) or [feat.fill]
                v = float(qs[int(rng.integers(len(qs)))])
                rec[key] = _clean_number(v)
            elif feat.type == "text":
                texts = TEXT_CANARIES[feat.text.shape]
                rec[key] = texts[(i + int(rng.integers(len(texts)))) % len(texts)]
            else:
                cats = feat.categories or ["-"]
                rec[key] = cats[int(rng.integers(len(cats)))]
        records.append(rec)
    numeric = [f for f in spec.features if f.type == "numeric"]
    categorical = [f for f in spec.features if f.type == "categorical"]
    if n >= 3 and numeric:
        records[-1][numeric[0].fields[0]] = spec.missing.tokens[0] if spec.missing.policy == "fill" else records[-1][numeric[0].fields[0]]
        records[-2][numeric[-1].fields[0]] = repr(records[-2][numeric[-1].fields[0]])
    if n >= 3 and categorical:
        records[-3][categorical[0].fields[0]] = "flowtag-canary-unknown"
    aliased = _through_aliases(spec, records[0]) if records else None
    if aliased is not None:
        records.append(aliased)
    return records


def _through_aliases(spec: FeatureSpec, record: dict) -> dict | None:
    """`record` with each value that an alias converts written under that alias instead (a
    numeric value divided by the alias's scale, a category under a map key that gives it), so
    the consumer's canary check runs the conversions too; `None` when no alias converts."""
    out, converted = dict(record), False
    for feat in spec.features:
        canonical = feat.fields[0]
        for entry in feat.fields[1:]:
            if isinstance(entry, str) or canonical not in out:
                continue
            value = out[canonical]
            if feat.type == "numeric" and "scale" in entry and isinstance(value, (int, float)):
                # The expected score is computed from this record as written, so the division
                # need not be exact.
                out[entry["name"]] = _clean_number(value / float(entry["scale"]))
            elif feat.type == "categorical" and "map" in entry:
                key = next((k for k, c in entry["map"].items() if c == value), None)
                if key is None:
                    continue
                out[entry["name"]] = int(key) if key.isdigit() else key
            else:
                continue
            del out[canonical]
            converted = True
            break
    return out if converted else None


def _clean_number(v: float) -> float | int:
    if math.isfinite(v) and v == int(v) and abs(v) < 2**53:
        return int(v)
    return float(f"{v:.9g}")


def canary_expectations(spec: FeatureSpec, records: list[dict], score_fn, quantiles: list[float], threshold: float, higher_is_anomalous: bool = True) -> list[dict]:
    """Expected raw score, calibrated score and verdict of each canary record, computed through
    the record-by-record featurizer (as the plugin reads JSON) and `score_fn(X) -> raw`."""
    import json

    parsed = [json.loads(json.dumps(r), parse_int=JsonNumber, parse_float=JsonNumber) for r in records]
    X, errors = spec.featurize_records(parsed)
    if any(errors):
        raise ValueError(f"a canary record cannot be featurized: {next(e for e in errors if e)}")
    raw = np.asarray(score_fn(X), dtype=np.float32)
    out = []
    for rec, r in zip(records, raw.tolist()):
        s = r if higher_is_anomalous else -r
        out.append({
            "record": rec,
            "raw_score": float(r),
            "score": round(calibrate(s, quantiles if higher_is_anomalous else [-q for q in reversed(quantiles)]), 6),
            "verdict": "anomalous" if (r >= threshold if higher_is_anomalous else r <= threshold) else "normal",
        })
    return out


def build(
    *,
    name: str,
    version: str,
    kind: str,
    schema: str,
    spec: FeatureSpec,
    model_bytes: bytes,
    output: dict,
    threshold: float,
    quantiles: list[float],
    reference: list[dict],
    canaries: list[dict],
    metrics: dict,
    training: dict,
    higher_is_anomalous: bool = True,
    created: str | None = None,
) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": str(version),
        "created": created or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "kind": kind,
        "schema": schema,
        "training": training,
        "input": {"name": "input", "width": spec.width},
        "output": {**output, "higher_is_anomalous": higher_is_anomalous},
        **spec.to_manifest(),
        "threshold": float(threshold),
        "calibration": {"quantiles": quantiles, "source": "normal validation traffic"},
        "reference": reference,
        "metrics": _finite(metrics),
        "model_sha256": sha256(model_bytes),
        "canaries": canaries,
    }
    validate(manifest)
    return manifest


def _finite(d: Any) -> Any:
    """JSON has no NaN: metrics that could not be computed become null."""
    if isinstance(d, dict):
        return {k: _finite(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_finite(v) for v in d]
    if isinstance(d, (float, np.floating)):
        return float(d) if math.isfinite(d) else None
    if isinstance(d, np.integer):
        return int(d)
    return d


def validate(manifest: dict) -> None:
    """Structural checks the plugin also makes; raises ValueError naming the key."""
    if manifest.get("format") != FORMAT:
        raise ValueError(f"format: expected {FORMAT}, got {manifest.get('format')!r}")
    for key in ("name", "version", "kind", "features", "output", "threshold", "calibration", "reference", "model_sha256"):
        if key not in manifest:
            raise ValueError(f"missing key {key!r}")
    spec = FeatureSpec.from_manifest(manifest)
    if manifest["input"]["width"] != spec.width:
        raise ValueError(f"input.width: {manifest['input']['width']} but the features make {spec.width} columns")
    if len(manifest["reference"]) != len(spec.features):
        raise ValueError("reference: expected one entry per feature")
    q = manifest["calibration"]["quantiles"]
    if len(q) < 2 or any(b < a for a, b in zip(q, q[1:])):
        raise ValueError("calibration.quantiles: expected at least 2 non-decreasing values")
