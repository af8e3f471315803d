"""The feature spec of a model, fitted on its training rows.

What goes in: every column of the dataset except the label, the attack family, identifiers and
columns the schema drops (leakage guards: `id` and `attack_cat` for UNSW-NB15, addresses and
timestamps for CICIDS2017), pure-noise columns (TCP initial sequence numbers), and, unless asked
for, the schema's "leaky" columns (UNSW-NB15's TTL features nearly encode the label in that
capture; results are reported with and without them).

How each column is read is the plugin's rule set (`flowtag_export.spec`): numbers, numbers
written as strings, `Infinity`/`NaN`/`-`/empty by the missing-value rule. Numeric features are
clipped to the range seen in training (which also bounds infinities), heavy-tailed ones go
through a sign-preserving `log1p`, and a missing value is filled with the training median.
Categorical features keep their most frequent categories (the rest, and anything new at scoring
time, share an unknown bucket) and are index-encoded.
"""

from __future__ import annotations

import numpy as np

from flowtag_export.spec import Feature, FeatureSpec, MissingRule, Transform

from .datasets import Dataset

#: Categories kept per categorical feature (by training frequency); rarer ones share "unknown".
MAX_CATEGORIES = 24
#: A category needs this many training rows to get its own code.
MIN_CATEGORY_ROWS = 5


def feature_columns(ds: Dataset, *, use_leaky: bool, only: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns a model reads."""
    s = ds.schema
    skip = set(s.drop) | set(s.noise) | ({s.label["column"]} if s.label else set()) | ({s.family} if s.family else set())
    if not use_leaky:
        skip |= set(s.leaky)
    cols = [c for c in ds.frame.columns if c not in skip]
    if only is not None:
        missing = [c for c in only if c not in cols]
        if missing:
            raise ValueError(f"{s.name}: columns {missing} are not available (dropped, leaky or absent)")
        cols = [c for c in cols if c in only]
    categorical = [c for c in cols if c in s.categorical]
    numeric = [c for c in cols if c not in s.categorical]
    return numeric, categorical


def fit_spec(
    ds: Dataset,
    rows: np.ndarray,
    *,
    use_leaky: bool,
    only: list[str] | None = None,
    extra_aliases: dict[str, list[str]] | None = None,
    optional: set[str] | None = None,
) -> FeatureSpec:
    """Fit a spec on `rows` (training rows) of `ds`.

    `only` limits the features (the portable bundle); `extra_aliases` adds field names other
    log formats use; `optional` marks features a record may lack (filled instead of unscored).
    """
    numeric, categorical = feature_columns(ds, use_leaky=use_leaky, only=only)
    train = ds.frame.iloc[rows]
    probe = FeatureSpec([], MissingRule())
    aliases = {**ds.schema.aliases}
    for k, v in (extra_aliases or {}).items():
        aliases[k] = list(dict.fromkeys(aliases.get(k, []) + v))
    optional = optional or set()
    features = []
    for col in numeric:
        feat = Feature(col, [col] + aliases.get(col, []), required=col not in optional)
        values = probe.numeric_values(train, feat)
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            continue
        lo, hi = float(finite.min()), float(finite.max())
        feat.fill = float(np.median(finite))
        feat.transforms = [Transform("clip", min=lo, max=hi)]
        if hi - lo > 100:
            feat.transforms.append(Transform("log1p"))
        features.append(feat)
    for col in categorical:
        counts = train[col].str.strip().value_counts()
        cats = [str(c) for c, n in counts.items() if n >= MIN_CATEGORY_ROWS][:MAX_CATEGORIES]
        fill = ds.schema.category_fill.get(col)
        features.append(
            Feature(col, [col] + aliases.get(col, []), type="categorical", encoding="index", categories=cats, required=col not in optional and fill is None, fill_category=fill)
        )
    return FeatureSpec(features, MissingRule(infinity="clip", policy="fill"))


def raw_quantiles(spec: FeatureSpec, ds: Dataset, rows: np.ndarray) -> dict[str, list[float]]:
    """Per numeric feature, quantiles of raw training values: the material canary rows are
    synthesized from (never dataset rows themselves)."""
    frame = ds.frame.iloc[rows]
    out = {}
    for f in spec.features:
        if f.type == "numeric":
            v = spec.numeric_values(frame, f)
            out[f.name] = [float(q) for q in np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95, 0.99])]
    return out
