"""The feature spec: how a flow record becomes one row of model input.

This is the `features` and `missing` part of a bundle manifest (format 1), and the one Python
definition of featurization. Training builds a spec from data and featurizes whole frames with
:meth:`FeatureSpec.transform_frame`; the plugin (Rust) executes the same spec record by record;
:meth:`FeatureSpec.featurize_records` is that record-by-record path in Python, used for canary
rows and parity tests. `docs/bundle-format.md` states the rules both sides follow.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .text import TextSpec, TextSpecError, value_bytes
from .text import featurize as featurize_text

#: Values that mean "no value" in a numeric field, compared after trimming, ASCII-case-insensitively.
DEFAULT_MISSING_TOKENS = ["", "-", "?", "nan", "null", "none", "(empty)"]

# Exactly the grammar of Rust's `f64::from_str`, so both sides accept the same strings.
_NUMBER = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.IGNORECASE)
_ASCII_WS = " \t\n\x0c\r"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class SpecError(ValueError):
    """A spec or manifest section that cannot be used; the message names the key."""


class RecordError(ValueError):
    """A record that cannot be featurized; the message names the field."""


class JsonNumber(str):
    """A JSON number kept as its text, as the plugin keeps it (see :func:`loads_record`)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_record(line: str | bytes) -> Any:
    """Parse one JSON record the way the plugin reads it: numbers keep their text, and the
    non-standard `NaN`/`Infinity` literals Python would accept are refused."""
    return json.loads(line, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_reject_constant)


@dataclass
class Transform:
    """One step applied to a numeric value, in float64: `clip` (to [min, max]), `log1p`
    (sign-preserving: sign(x) * log1p(|x|)) or `scale` ((x - mean) / std)."""

    op: str
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None

    def to_manifest(self) -> dict:
        if self.op == "clip":
            return {"op": "clip", "min": self.min, "max": self.max}
        if self.op == "log1p":
            return {"op": "log1p"}
        if self.op == "scale":
            return {"op": "scale", "mean": self.mean, "std": self.std}
        raise SpecError(f"transform op {self.op!r} is not one of clip, log1p, scale")

    @classmethod
    def from_manifest(cls, d: dict, where: str) -> "Transform":
        op = d.get("op")
        try:
            if op == "clip":
                t = cls("clip", min=float(d["min"]), max=float(d["max"]))
                if not t.min <= t.max:
                    raise SpecError(f"{where}: clip min {t.min} is above max {t.max}")
                return t
            if op == "log1p":
                return cls("log1p")
            if op == "scale":
                t = cls("scale", mean=float(d["mean"]), std=float(d["std"]))
                if not (t.std > 0 and math.isfinite(t.std) and math.isfinite(t.mean)):
                    raise SpecError(f"{where}: scale needs a finite mean and std > 0")
                return t
        except KeyError as e:
            raise SpecError(f"{where}: transform {op!r} needs key {e.args[0]!r}") from None
        raise SpecError(f"{where}.op: {op!r} is not one of clip, log1p, scale")

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.op == "clip":
            return np.clip(x, self.min, self.max)
        if self.op == "log1p":
            return np.where(x < 0, -1.0, 1.0) * np.log1p(np.abs(x))
        return (x - self.mean) / self.std


def field_name(entry: str | dict) -> str:
    """The name of one entry of a feature's `fields` (a name, or an alias object)."""
    return entry if isinstance(entry, str) else entry["name"]


def _check_alias(entry: Any, kind: str, where: str) -> None:
    """An entry of `fields`: a name, or `{"name", "scale"}` (numeric) / `{"name", "map", "default"}`
    (categorical), as `docs/bundle-format.md` states."""
    if isinstance(entry, str):
        return
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise SpecError(f"{where}: expected a field name, or an object with a string `name`")
    unknown = set(entry) - {"name", "scale", "map", "default"}
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
    if kind == "numeric" and ("map" in entry or "default" in entry):
        raise SpecError(f"{where}: map and default apply to categorical features only; a numeric one takes scale")
    if kind == "categorical" and "scale" in entry:
        raise SpecError(f"{where}: scale applies to numeric features only; a categorical one takes map")
    if "scale" in entry:
        k = entry["scale"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k == 0:
            raise SpecError(f"{where}: scale {k} is not a finite, non-zero number")
    if "map" in entry and not (isinstance(entry["map"], dict) and all(isinstance(v, str) for v in entry["map"].values())):
        raise SpecError(f"{where}: map must be an object of strings")
    if "default" in entry and not isinstance(entry["default"], str):
        raise SpecError(f"{where}: default must be a string")


@dataclass
class Feature:
    """One manifest feature: where its value comes from and how it becomes columns.

    `fields`: the canonical name first, then aliases; an alias from another tool may be an
    object that converts its values (`{"name": ..., "scale": k}` for a numeric feature,
    `{"name": ..., "map": {...}, "default": ...}` for a categorical one)."""

    name: str
    fields: list[str | dict]
    type: str = "numeric"  # numeric | categorical
    required: bool = True
    fill: float = 0.0
    transforms: list[Transform] = field(default_factory=list)
    encoding: str = "onehot"  # onehot | index (categorical only)
    categories: list[str] = field(default_factory=list)
    fill_category: str | None = None  # categorical only: the value of an absent or null field
    text: TextSpec | None = None  # text only

    @property
    def width(self) -> int:
        if self.type == "categorical" and self.encoding == "onehot":
            return len(self.categories) + 1
        if self.type == "text":
            return self.text.width
        return 1

    @property
    def names(self) -> list[str]:
        """The field names, canonical first."""
        return [field_name(f) for f in self.fields]

    def entry(self, name: str) -> str | dict:
        """The first entry of `fields` whose name is `name` (compared trimmed)."""
        return next(f for f in self.fields if _trim(field_name(f)) == _trim(name))

    def column_names(self) -> list[str]:
        if self.type == "text":
            return self.text.column_names(self.name)
        if self.type == "categorical" and self.encoding == "onehot":
            return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}=<other>"]
        return [self.name]

    def to_manifest(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "fields": [f if isinstance(f, str) else dict(f) for f in self.fields], "type": self.type, "required": self.required}
        if self.type == "numeric":
            d["fill"] = self.fill
            d["transforms"] = [t.to_manifest() for t in self.transforms]
        elif self.type == "text":
            d["text"] = self.text.to_manifest()
        else:
            d["encoding"] = self.encoding
            d["categories"] = list(self.categories)
            if self.fill_category is not None:
                d["fill"] = self.fill_category
        return d

    @classmethod
    def from_manifest(cls, d: dict, where: str) -> "Feature":
        for key in ("name", "fields", "type"):
            if key not in d:
                raise SpecError(f"{where}: missing key {key!r}")
        if not isinstance(d["fields"], list) or not d["fields"]:
            raise SpecError(f"{where}.fields: expected a non-empty list of field names")
        kind = d["type"]
        if not isinstance(d["fields"][0], str):
            raise SpecError(f"{where}.fields[0]: the canonical name must be a plain name, not an alias object")
        for k, entry in enumerate(d["fields"]):
            if kind == "text" and not isinstance(entry, str):
                raise SpecError(f"{where}.fields[{k}]: a text feature's fields are plain names")
            _check_alias(entry, kind, f"{where}.fields[{k}]")
        f = cls(name=d["name"], fields=[e if isinstance(e, str) else dict(e) for e in d["fields"]], type=kind, required=bool(d.get("required", True)))
        if kind == "numeric":
            f.fill = float(d.get("fill", 0.0))
            f.transforms = [Transform.from_manifest(t, f"{where}.transforms[{i}]") for i, t in enumerate(d.get("transforms", []))]
        elif kind == "categorical":
            f.encoding = d.get("encoding", "onehot")
            if f.encoding not in ("onehot", "index"):
                raise SpecError(f"{where}.encoding: {f.encoding!r} is not onehot or index")
            f.categories = [str(c) for c in d.get("categories", [])]
            f.fill_category = None if d.get("fill") is None else str(d["fill"])
            if len(set(f.categories)) != len(f.categories):
                raise SpecError(f"{where}.categories: duplicate category")
        elif kind == "text":
            try:
                f.text = TextSpec.from_manifest(d.get("text"))
            except TextSpecError as e:
                raise SpecError(f"{where}.text.{e}") from None
        else:
            raise SpecError(f"{where}.type: {kind!r} is not numeric, categorical or text")
        return f


@dataclass
class MissingRule:
    """What counts as a missing numeric value and what happens to it.

    `tokens`: strings meaning "no value". `infinity`: `missing` treats +-Infinity as missing,
    `clip` passes it to the transforms (a clip bounds it; if it is still infinite after the
    transforms it is missing). `policy`: `fill` uses the feature's `fill` value (a raw value that
    then goes through the transforms); `unscored` makes the record unscored.
    """

    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_MISSING_TOKENS))
    infinity: str = "clip"
    policy: str = "fill"

    def to_manifest(self) -> dict:
        return {"tokens": list(self.tokens), "infinity": self.infinity, "policy": self.policy}

    @classmethod
    def from_manifest(cls, d: dict) -> "MissingRule":
        rule = cls(tokens=[str(t) for t in d.get("tokens", DEFAULT_MISSING_TOKENS)], infinity=d.get("infinity", "clip"), policy=d.get("policy", "fill"))
        if rule.infinity not in ("missing", "clip"):
            raise SpecError(f"missing.infinity: {rule.infinity!r} is not missing or clip")
        if rule.policy not in ("fill", "unscored"):
            raise SpecError(f"missing.policy: {rule.policy!r} is not fill or unscored")
        return rule


def _trim(s: str) -> str:
    return s.strip(_ASCII_WS)


@dataclass
class FeatureSpec:
    features: list[Feature]
    missing: MissingRule = field(default_factory=MissingRule)

    @property
    def width(self) -> int:
        return sum(f.width for f in self.features)

    def column_names(self) -> list[str]:
        return [c for f in self.features for c in f.column_names()]

    def to_manifest(self) -> dict:
        return {"features": [f.to_manifest() for f in self.features], "missing": self.missing.to_manifest()}

    @classmethod
    def from_manifest(cls, manifest: dict) -> "FeatureSpec":
        if not manifest.get("features"):
            raise SpecError("features: expected a non-empty list")
        feats = [Feature.from_manifest(f, f"features[{i}]") for i, f in enumerate(manifest["features"])]
        names = [f.name for f in feats]
        if len(set(names)) != len(names):
            raise SpecError("features: two features share a name")
        return cls(feats, MissingRule.from_manifest(manifest.get("missing", {})))

    # -- whole frames (training) -------------------------------------------------------------

    def column(self, df: pd.DataFrame, feat: Feature) -> tuple[pd.Series | None, str | dict | None]:
        """The frame's column for `feat` (the first of its fields the frame has) and that entry."""
        stripped = {_trim(str(c)): c for c in df.columns}
        for entry in feat.fields:
            name = field_name(entry)
            if name in df.columns:
                return df[name], entry
            if _trim(name) in stripped:
                return df[stripped[_trim(name)]], entry
        return None, None

    def numeric_values(self, df: pd.DataFrame, feat: Feature) -> np.ndarray:
        """Raw float64 values of a numeric feature with the missing rule applied (before the
        transforms), as the plugin reads them."""
        col, entry = self.column(df, feat)
        scale = entry.get("scale") if isinstance(entry, dict) else None
        if col is None:
            if feat.required:
                raise RecordError(f"missing field {feat.names[0]!r} (feature {feat.name!r})")
            values = np.full(len(df), np.nan)
        elif pd.api.types.is_bool_dtype(col):
            values = col.astype(np.float64).to_numpy()
        elif pd.api.types.is_numeric_dtype(col):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        elif col.map(type).eq(str).all():
            values = self._parse_text_column(col, feat)
        else:
            values = np.array([self._parse_number(v, feat) for v in col.tolist()], dtype=np.float64)
        if scale is not None:
            values = values * float(scale)
        return self._resolve_missing(values, feat)

    def _parse_text_column(self, col: pd.Series, feat: Feature) -> np.ndarray:
        """Vectorised :meth:`_parse_number` for a column of strings (CSV read as text)."""
        text = col.str.strip(_ASCII_WS)
        missing = text.str.translate(_ASCII_LOWER).isin(self._tokens).to_numpy()
        valid = text.str.fullmatch(_NUMBER).to_numpy(dtype=bool)
        bad = ~missing & ~valid
        if bad.any():
            first = col[bad].iloc[0]
            raise RecordError(f"field {feat.names[0]!r}: expected a number, got {first!r} ({int(bad.sum())} rows)")
        values = np.full(len(col), np.nan)
        # Python's float() rounds correctly, like Rust's parser; pandas' own parser may not.
        values[valid] = np.fromiter((float(v) for v in text[valid]), dtype=np.float64, count=int(valid.sum()))
        return values

    def _parse_number(self, v: Any, feat: Feature) -> float:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return math.nan
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, str):
            return float(v)
        if isinstance(v, str):
            s = _trim(v)
            if s.translate(_ASCII_LOWER) in self._tokens:
                return math.nan
            if _NUMBER.fullmatch(s):
                return float(s)
            raise RecordError(f"field {feat.names[0]!r}: expected a number, got {v!r}")
        raise RecordError(f"field {feat.names[0]!r}: expected a number, got {type(v).__name__}")

    @property
    def _tokens(self) -> set[str]:
        return {t.translate(_ASCII_LOWER) for t in self.missing.tokens}

    def _resolve_missing(self, values: np.ndarray, feat: Feature) -> np.ndarray:
        values = values.copy()
        if self.missing.infinity == "missing":
            values[np.isinf(values)] = np.nan
        missing = np.isnan(values)
        if missing.any():
            if self.missing.policy == "unscored":
                raise RecordError(f"field {feat.names[0]!r} has no value")
            values[missing] = feat.fill
        return values

    def _finish_numeric(self, values: np.ndarray, feat: Feature) -> np.ndarray:
        x = values
        for t in feat.transforms:
            x = t.apply(x)
        # Still infinite after the transforms (no clip): missing, then filled through them.
        bad = ~np.isfinite(x)
        if bad.any():
            if self.missing.policy == "unscored":
                raise RecordError(f"field {feat.names[0]!r} has no usable value")
            filled = np.array([feat.fill], dtype=np.float64)
            for t in feat.transforms:
                filled = t.apply(filled)
            x = np.where(bad, filled[0], x)
        return x

    def category_codes(self, df: pd.DataFrame, feat: Feature) -> np.ndarray:
        col, entry = self.column(df, feat)
        index = {c: i for i, c in enumerate(feat.categories)}
        unknown = len(feat.categories)
        absent = index.get(feat.fill_category, unknown) if feat.fill_category is not None else unknown
        if col is None:
            if feat.required:
                raise RecordError(f"missing field {feat.names[0]!r} (feature {feat.name!r})")
            return np.full(len(df), absent, dtype=np.int64)
        read = recoder(entry)
        keys = [read(self.category_key(v)) for v in col.tolist()]
        return np.array([absent if k is None else index.get(k, unknown) for k in keys], dtype=np.int64)

    def text_block(self, df: pd.DataFrame, feat: Feature) -> np.ndarray:
        col, _ = self.column(df, feat)
        if col is None:
            if feat.required:
                raise RecordError(f"missing field {feat.names[0]!r} (feature {feat.name!r})")
            values: list = [None] * len(df)
        else:
            values = [None if (isinstance(v, float) and math.isnan(v)) else v for v in col.tolist()]
        out = np.zeros((len(df), feat.width), np.float32)
        cache: dict[bytes, np.ndarray] = {}
        for i, v in enumerate(values):
            b = self._text_bytes(v, feat)
            row = cache.get(b)
            if row is None:
                row = cache[b] = featurize_text(feat.text, b)
            out[i] = row
        return out

    @staticmethod
    def _text_bytes(v: Any, feat: Feature) -> bytes:
        if isinstance(v, (dict, list)):
            raise RecordError(f"field {feat.names[0]!r}: expected text, got {'an object' if isinstance(v, dict) else 'an array'}")
        if isinstance(v, (np.integer, np.floating)):
            v = v.item()
        return value_bytes(v)

    @staticmethod
    def category_key(v: Any) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return _trim(v)
        if isinstance(v, (np.integer, int)):
            return str(int(v))
        return str(v)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        """Featurize a whole frame: `[len(df), width]` float32. Raises :class:`RecordError` on
        the first field that cannot be read (training data is expected to be clean by then)."""
        cols = []
        for feat in self.features:
            if feat.type == "numeric":
                cols.append(self._finish_numeric(self.numeric_values(df, feat), feat)[:, None])
            elif feat.type == "text":
                cols.append(self.text_block(df, feat))
            else:
                codes = self.category_codes(df, feat)
                if feat.encoding == "index":
                    cols.append(codes.astype(np.float64)[:, None])
                else:
                    onehot = np.zeros((len(df), feat.width))
                    onehot[np.arange(len(df)), codes] = 1.0
                    cols.append(onehot)
        return np.hstack(cols).astype(np.float32) if cols else np.zeros((len(df), 0), np.float32)

    # -- record by record (the plugin's path) ------------------------------------------------

    def featurize_record(self, record: dict) -> np.ndarray:
        """One record (as :func:`loads_record` returns it) to one float32 row, or
        :class:`RecordError` naming the field."""
        if not isinstance(record, dict):
            raise RecordError("record is not a JSON object")
        row: list[float] = []
        for feat in self.features:
            present = self._record_keys(record, feat)
            value = record[present[-1]] if present else _ABSENT
            entry = feat.entry(present[-1]) if present else None
            if value is _ABSENT and feat.required:
                raise RecordError(f"missing field {feat.names[0]!r} (feature {feat.name!r})")
            if feat.type == "text":
                row.extend(featurize_text(feat.text, self._text_bytes(None if value is _ABSENT else value, feat)).tolist())
            elif feat.type == "numeric":
                if isinstance(value, (dict, list)):
                    raise RecordError(f"field {feat.names[0]!r}: expected a number, got {'an object' if isinstance(value, dict) else 'an array'}")
                raw = math.nan if value is _ABSENT else self._parse_number(value, feat)
                if isinstance(entry, dict) and "scale" in entry:
                    raw *= float(entry["scale"])
                x = self._finish_numeric(self._resolve_missing(np.array([raw]), feat), feat)
                row.append(float(x[0]))
            else:
                if isinstance(value, (dict, list)):
                    raise RecordError(f"field {feat.names[0]!r}: expected a category, got {'an object' if isinstance(value, dict) else 'an array'}")
                key = None if value is _ABSENT else recoder(entry)(self.category_key(value))
                if key is None and feat.fill_category is not None:
                    key = feat.fill_category
                code = feat.categories.index(key) if key in feat.categories else len(feat.categories)
                if feat.encoding == "index":
                    row.append(float(code))
                else:
                    onehot = [0.0] * feat.width
                    onehot[code] = 1.0
                    row.extend(onehot)
        return np.array(row, dtype=np.float64).astype(np.float32)

    def _record_keys(self, record: dict, feat: Feature) -> list[str]:
        """Keys of `record` that name this feature, in record order (the last one wins, as
        for duplicate keys in JSON)."""
        names = {_trim(f) for f in feat.names}
        return [k for k in record if _trim(k) in names]

    def featurize_records(self, records: Iterable[Any]) -> tuple[np.ndarray, list[str | None]]:
        """Rows for many records; a record that fails gets a zero row and its error."""
        rows, errors = [], []
        for rec in records:
            try:
                rows.append(self.featurize_record(rec))
                errors.append(None)
            except RecordError as e:
                rows.append(np.zeros(self.width, np.float32))
                errors.append(str(e))
        return (np.vstack(rows) if rows else np.zeros((0, self.width), np.float32)), errors


_ABSENT = object()


def check_fields(spec: FeatureSpec, columns: Sequence[str]) -> list[str]:
    """Required feature fields that none of `columns` provides (after trimming)."""
    have = {_trim(c) for c in columns}
    return [f.names[0] for f in spec.features if f.required and not any(_trim(n) in have for n in f.names)]


def recoder(entry: str | dict | None) -> Callable[[str | None], str | None]:
    """How an alias reads a categorical value: through its map (keys trimmed, prepared once),
    else its default, else as it is; `None` (absent or null) stays `None`."""
    if not isinstance(entry, dict) or ("map" not in entry and "default" not in entry):
        return lambda key: key
    mapped = {_trim(k): v for k, v in entry.get("map", {}).items()}
    default = entry.get("default")

    def read(key: str | None) -> str | None:
        if key is None:
            return None
        return mapped.get(key, key if default is None else default)

    return read
