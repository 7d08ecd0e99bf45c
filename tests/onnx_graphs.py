"""Tiny hand-built ONNX graphs shared by tests of different modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def qdq_conv(path: Path, channels: int = 16, size: int = 32) -> Path:
    """Conv with uint8 QDQ activations and per-channel int8 weights: what both NPU profiles and
    the HTP emulator take."""
    w = np.random.default_rng(0).integers(-100, 100, size=(channels, 1, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.full(channels, 0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "w_zp"),
             numpy_helper.from_array(np.float32(0.02), "a_s"), numpy_helper.from_array(np.uint8(128), "a_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "a_s", "a_zp"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], name="dq_w", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "a_s", "a_zp"], ["yq"], name="q_out"),
             helper.make_node("DequantizeLinear", ["yq", "a_s", "a_zp"], ["out"], name="dq_out")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, channels, size, size])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path
