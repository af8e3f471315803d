"""scikit-learn tree ensembles as compact ONNX graphs.

Every model here becomes a single `TreeEnsembleClassifier` or `TreeEnsembleRegressor` node
(`ai.onnx.ml`), never one node per tree as skl2onnx's IsolationForest converter writes (about
2,700 nodes and 100x slower), and never a `ZipMap`: probabilities stay a plain `[N, classes]`
tensor, as skl2onnx writes with `zipmap=False`.

Thresholds: scikit-learn compares `float32(x) <= threshold` with a float64 threshold; ONNX
thresholds are float32. Rounding a threshold to the nearest float32 can move it past an input
value and send that row the other way, so every threshold is rounded *down* to the largest
float32 not above it, which gives the same decision for every float32 input.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .graph import ML_OPSET, OPSET, INPUT, const, model_proto


def round_down_f32(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold."""
    threshold = np.asarray(threshold, dtype=np.float64)
    t = threshold.astype(np.float32)
    above = t.astype(np.float64) > threshold
    t[above] = np.nextafter(t[above], np.float32(-np.inf))
    return t


class _Attrs:
    """Attribute lists of one tree-ensemble node, filled tree by tree."""

    def __init__(self, leaf_prefix: str):
        self.p = leaf_prefix
        self.nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids", "falsenodeids", "missing_value_tracks_true")}
        self.leaves: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}

    def add_tree(self, tree_id: int, left, right, feature, threshold, leaf_weights, missing_left=None):
        """`leaf_weights(node) -> [(output, weight)]` for each leaf node."""
        thresholds = round_down_f32(threshold)
        for node in range(len(left)):
            leaf = left[node] < 0
            n = self.nodes
            n["treeids"].append(tree_id)
            n["nodeids"].append(node)
            n["featureids"].append(0 if leaf else int(feature[node]))
            n["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            n["values"].append(0.0 if leaf else float(thresholds[node]))
            n["truenodeids"].append(0 if leaf else int(left[node]))
            n["falsenodeids"].append(0 if leaf else int(right[node]))
            n["missing_value_tracks_true"].append(int(bool(missing_left[node])) if (missing_left is not None and not leaf) else 0)
            if leaf:
                for output, weight in leaf_weights(node):
                    self.leaves["treeids"].append(tree_id)
                    self.leaves["nodeids"].append(node)
                    self.leaves["ids"].append(int(output))
                    self.leaves["weights"].append(float(weight))

    def kwargs(self) -> dict:
        kw = {f"nodes_{k}": v for k, v in self.nodes.items()}
        if not any(kw["nodes_missing_value_tracks_true"]):
            del kw["nodes_missing_value_tracks_true"]
        kw.update({f"{self.p}_{k}": v for k, v in self.leaves.items()})
        return kw


def _sk_tree(tree, feature_map=None):
    t = tree.tree_
    feature = t.feature if feature_map is None else np.where(t.feature >= 0, np.asarray(feature_map)[np.maximum(t.feature, 0)], -2)
    return t.children_left, t.children_right, feature, t.threshold


def _average_path_length(n_samples: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al.: average path length of an unsuccessful BST search (sklearn's)."""
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def isolation_forest(model, width: int) -> tuple[bytes, dict]:
    """An IsolationForest as one `TreeEnsembleRegressor` plus sklearn's score arithmetic.

    Output `score` `[N, 1]` = `-decision_function(X)` = `2 ** (-depth / (trees * c(max_samples))) + offset_`:
    higher is more anomalous, positive means an outlier at the fitted contamination.
    """
    attrs = _Attrs("target")
    subsample = model._max_features != width
    for i, (est, features) in enumerate(zip(model.estimators_, model.estimators_features_)):
        t = est.tree_
        # sklearn: depths += decision_path_length[leaf] + c(n_node_samples[leaf]) - 1, root depth 1.
        weight = t.compute_node_depths() + _average_path_length(t.n_node_samples) - 1.0
        left, right, feature, threshold = _sk_tree(est, features if subsample else None)
        attrs.add_tree(i, left, right, feature, threshold, lambda node: [(0, weight[node])])
    denominator = len(model.estimators_) * _average_path_length([model._max_samples])[0]
    nodes = [
        helper.make_node("TreeEnsembleRegressor", [INPUT], ["depths"], domain="ai.onnx.ml", n_targets=1, aggregate_function="SUM", **attrs.kwargs()),
        helper.make_node("Div", ["depths", "denominator"], ["ratio"]),
        helper.make_node("Neg", ["ratio"], ["exponent"]),
        helper.make_node("Pow", ["two", "exponent"], ["isolation"]),
        helper.make_node("Add", ["isolation", "offset"], ["score"]),
    ]
    inits = [const("denominator", denominator), const("two", 2.0), const("offset", float(model.offset_))]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])]
    return model_proto(nodes, inits, width, outputs, "isolation_forest"), {"name": "score", "column": 0}


def random_forest(model, width: int) -> tuple[bytes, dict]:
    """A RandomForest/ExtraTrees classifier: probabilities `[N, classes]`, the mean of each
    tree's leaf class frequencies, as `predict_proba`."""
    attrs = _Attrs("class")
    n_trees = len(model.estimators_)
    for i, est in enumerate(model.estimators_):
        value = est.tree_.value[:, 0, :]
        proba = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        left, right, feature, threshold = _sk_tree(est)
        attrs.add_tree(i, left, right, feature, threshold, lambda node: [(c, proba[node, c] / n_trees) for c in range(proba.shape[1])])
    return _classifier_proto(model, attrs, width, post_transform="NONE", base_values=None, kind="random_forest")


def hist_gradient_boosting(model, width: int) -> tuple[bytes, dict]:
    """A binary HistGradientBoostingClassifier: leaves vote for class 0 with their raw values,
    the baseline is the base value, and onnxruntime's LOGISTIC post transform of a one-class
    binary ensemble writes `[sigmoid(-raw), sigmoid(raw)]` = `predict_proba`."""
    if len(model.classes_) != 2:
        raise ValueError("only binary HistGradientBoostingClassifier models are exported")
    if model._preprocessor is not None or getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ValueError("HistGradientBoostingClassifier with native categorical features is not supported; one-hot encode them in the feature spec")
    attrs = _Attrs("class")
    signs = set()
    for i, predictors in enumerate(model._predictors):
        nodes = predictors[0].nodes
        left = np.where(nodes["is_leaf"] == 1, -1, nodes["left"].astype(np.int64))
        right = np.where(nodes["is_leaf"] == 1, -1, nodes["right"].astype(np.int64))
        values = nodes["value"]
        signs.update(np.sign(values[nodes["is_leaf"] == 1]).tolist())
        attrs.add_tree(i, left, right, nodes["feature_idx"], nodes["num_threshold"], lambda node: [(0, values[node])], missing_left=nodes["missing_go_to_left"])
    if -1.0 not in signs:
        # With only non-negative votes onnxruntime reads them as probabilities ([1 - s, s]).
        raise ValueError("all leaf values are non-negative: the LOGISTIC export would be read as probabilities")
    baseline = float(np.ravel(model._baseline_prediction)[0])
    return _classifier_proto(model, attrs, width, post_transform="LOGISTIC", base_values=[baseline], kind="gradient_boosting")


def _classifier_proto(model, attrs: _Attrs, width: int, post_transform: str, base_values, kind: str):
    classes = [int(c) for c in model.classes_]
    kwargs = attrs.kwargs()
    if base_values is not None:
        kwargs["base_values"] = base_values
    node = helper.make_node(
        "TreeEnsembleClassifier", [INPUT], ["label", "probabilities"], domain="ai.onnx.ml",
        classlabels_int64s=classes, post_transform=post_transform, **kwargs,
    )
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(classes)]),
    ]
    # The anomaly score is the probability of the positive (attack) class.
    positive = classes.index(1) if 1 in classes else len(classes) - 1
    return model_proto([node], [], width, outputs, kind), {"name": "probabilities", "column": positive}


__all__ = ["isolation_forest", "random_forest", "hist_gradient_boosting", "round_down_f32", "OPSET", "ML_OPSET"]
