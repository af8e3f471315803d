"""Shared pieces of the ONNX graphs we write: opsets, the input, constants, the model proto."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import __version__

#: Default-domain opset (tract is tested up to 18; 17 keeps ReduceMean's `axes` an attribute).
OPSET = 17
#: `ai.onnx.ml` opset with TreeEnsembleClassifier/Regressor v3.
ML_OPSET = 3
#: Name of the single model input, `[N, width]` float32.
INPUT = "input"


def const(name: str, value) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def model_proto(nodes, initializers, width: int, outputs, doc: str) -> bytes:
    graph = helper.make_graph(
        nodes, "flowtag", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", width])], outputs, initializer=initializers
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="flowtag-export",
        producer_version=__version__,
        doc_string=doc,
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
