"""A dense autoencoder (scikit-learn `MLPRegressor` trained to reproduce its scaled input) as
ONNX, with the scaling and the reconstruction-error head inside the graph.

Scaling is plain `Sub`/`Div` arithmetic (not `ai.onnx.ml.Scaler`, which tract lacks). Outputs:
`score` `[N]`, the mean squared reconstruction error (higher is more anomalous), and `residual`
`[N, width]`, scaled input minus reconstruction, from which the plugin reads the features that
drove the score.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .graph import INPUT, const, model_proto

_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}


def autoencoder(mean: np.ndarray, scale: np.ndarray, mlp, width: int) -> tuple[bytes, dict]:
    if mlp.out_activation_ != "identity":
        raise ValueError(f"autoencoder output activation must be identity, got {mlp.out_activation_}")
    nodes = [helper.make_node("Sub", [INPUT, "mean"], ["centered"]), helper.make_node("Div", ["centered", "scale"], ["scaled"])]
    inits = [const("mean", mean), const("scale", scale)]
    h = "scaled"
    last = len(mlp.coefs_) - 1
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits += [const(f"W{i}", w), const(f"b{i}", b)]
        out = "reconstruction" if i == last else f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [out]))
        act = None if i == last else _ACTIVATIONS[mlp.activation]
        if act:
            nodes.append(helper.make_node(act, [out], [f"h{i}"]))
            h = f"h{i}"
        else:
            h = out
    nodes += [
        helper.make_node("Sub", ["scaled", "reconstruction"], ["residual"]),
        helper.make_node("Mul", ["residual", "residual"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["score"], axes=[1], keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("residual", TensorProto.FLOAT, ["N", width]),
    ]
    return model_proto(nodes, inits, width, outputs, "autoencoder"), {"name": "score", "column": 0, "residual": "residual"}


def reference_scores(mean, scale, mlp, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the graph computes, in numpy (float64): `(score, residual)`."""
    scaled = (X.astype(np.float64) - mean) / scale
    residual = scaled - mlp.predict(scaled)
    return (residual**2).mean(axis=1), residual
