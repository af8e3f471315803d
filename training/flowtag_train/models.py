"""The four models, each fitted the scikit-learn way and exported as a compact ONNX graph.

* `isolation_forest` and `autoencoder` learn normal traffic only (rows labelled normal in the
  training split); anything unlike it scores high.
* `random_forest` and `gradient_boosting` learn both classes; their score is the probability of
  an attack.

Every trained model gives `score(X)`, the raw score in Python (higher is more anomalous), and
`export()`, the ONNX graph and which output holds that score; the parity tests hold the two
equal, and equal to what the plugin computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from flowtag_export import autoencoder as ae_export
from flowtag_export import trees

UNSUPERVISED = {"isolation_forest", "autoencoder"}
KINDS = {"isolation_forest": "isolation_forest", "autoencoder": "autoencoder", "random_forest": "classifier", "gradient_boosting": "classifier"}

DEFAULTS: dict[str, dict[str, Any]] = {
    "isolation_forest": {"n_estimators": 100, "max_samples": 256},
    "autoencoder": {"hidden": [64, 32, 8, 32, 64], "epochs": 300, "batch_size": 256, "learning_rate": 1e-3, "alpha": 1e-4, "patience": 30, "clip": 10.0},
    "random_forest": {"n_estimators": 100, "max_depth": 20, "min_samples_leaf": 2},
    "gradient_boosting": {"max_iter": 400, "learning_rate": 0.05, "max_leaf_nodes": 31, "l2_regularization": 1.0},
}


@dataclass
class Trained:
    name: str
    kind: str
    params: dict
    score: Callable[[np.ndarray], np.ndarray]
    export: Callable[[int], tuple[bytes, dict]]
    extra: dict = field(default_factory=dict)


def fit(name: str, X: np.ndarray, y: np.ndarray, *, seed: int, params: dict | None = None, X_valid=None, y_valid=None) -> Trained:
    if name not in DEFAULTS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(DEFAULTS)}")
    unknown = sorted(set(params or {}) - set(DEFAULTS[name]))
    if unknown:
        raise ValueError(f"{name}: unknown parameters {unknown} (known: {sorted(DEFAULTS[name])})")
    p = {**DEFAULTS[name], **{k: _like(DEFAULTS[name][k], v) for k, v in (params or {}).items()}}
    if name in UNSUPERVISED:
        X = X[y == 0]
        if X_valid is not None:
            X_valid = X_valid[y_valid == 0]
    return {"isolation_forest": _iforest, "autoencoder": _autoencoder, "random_forest": _forest, "gradient_boosting": _boosting}[name](X, y, p, seed, X_valid)


def _like(default, value):
    """A parameter as the type of its default: JSON carriers (Kubeflow structs) turn 5 into 5.0."""
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, list) and default and isinstance(value, list):
        return [_like(default[0], v) for v in value]
    return value


def _iforest(X, y, p, seed, _):
    from sklearn.ensemble import IsolationForest

    m = IsolationForest(n_estimators=p["n_estimators"], max_samples=p["max_samples"], random_state=seed).fit(X)
    return Trained("isolation_forest", "isolation_forest", p, lambda Z: -m.decision_function(Z), lambda w: trees.isolation_forest(m, w))


def _forest(X, y, p, seed, _):
    from sklearn.ensemble import RandomForestClassifier

    m = RandomForestClassifier(n_estimators=p["n_estimators"], max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"], n_jobs=-1, random_state=seed).fit(X, y)
    return Trained("random_forest", "classifier", p, lambda Z: m.predict_proba(Z)[:, 1], lambda w: trees.random_forest(m, w))


def _boosting(X, y, p, seed, _):
    from sklearn.ensemble import HistGradientBoostingClassifier

    m = HistGradientBoostingClassifier(
        max_iter=p["max_iter"], learning_rate=p["learning_rate"], max_leaf_nodes=p["max_leaf_nodes"],
        l2_regularization=p["l2_regularization"], early_stopping=False, random_state=seed,
    ).fit(X, y)
    return Trained("gradient_boosting", "classifier", p, lambda Z: m.predict_proba(Z)[:, 1], lambda w: trees.hist_gradient_boosting(m, w))


def _autoencoder(X, y, p, seed, X_valid):
    """An MLP trained to reproduce its standardized input, epoch by epoch with a progress bar and
    early stopping on normal validation rows."""
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    X = X.astype(np.float64)
    scaler = StandardScaler().fit(X)
    clip = p["clip"]

    def scaled(Z):
        return np.clip((Z.astype(np.float64) - scaler.mean_) / scaler.scale_, -clip, clip)

    Xs = scaled(X)
    Vs = scaled(X_valid) if X_valid is not None and len(X_valid) else Xs[: min(len(Xs), 5000)]
    mlp = MLPRegressor(hidden_layer_sizes=tuple(p["hidden"]), alpha=p["alpha"], batch_size=p["batch_size"], learning_rate_init=p["learning_rate"], random_state=seed)
    best, best_state, stale = np.inf, None, 0
    bar = tqdm(range(p["epochs"]), desc="autoencoder", unit="epoch", leave=False)
    for _ in bar:
        mlp.partial_fit(Xs, Xs)  # one epoch, minibatches shuffled by sklearn
        loss = float(((Vs - mlp.predict(Vs)) ** 2).mean())
        bar.set_postfix(valid_loss=f"{loss:.4f}")
        if loss < best - 1e-6:
            best, stale = loss, 0
            best_state = ([c.copy() for c in mlp.coefs_], [b.copy() for b in mlp.intercepts_])
        else:
            stale += 1
            if stale >= p["patience"]:
                break
    bar.close()
    mlp.coefs_, mlp.intercepts_ = best_state
    # Training saw standardized values clipped to +-clip, for stability; scoring (here and in the
    # graph) does not clip, so a value far outside normal traffic weighs fully in the error.
    mean, scale = scaler.mean_, scaler.scale_

    def score(Z):
        return ae_export.reference_scores(mean, scale, mlp, Z)[0]

    return Trained("autoencoder", "autoencoder", {**p, "epochs_run": _ + 1}, score, lambda w: ae_export.autoencoder(mean, scale, mlp, w), {"valid_loss": best})
