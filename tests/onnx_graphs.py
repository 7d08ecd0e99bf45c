"""Tiny hand-built ONNX graphs shared by tests of different modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def depthwise_cnn(path: Path, seed: int = 0) -> Path:
    """A MobileNet-like block: dense stem, a depthwise conv (one channel per group), a grouped
    conv with two channels per group, a depthwise conv with a channel multiplier of 2, a
    pointwise projection. Only `dw_w` is depthwise in the sense whose integer kernels cannot
    saturate."""
    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int) -> Any:
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [w("stem_w", 16, 3, 3, 3), w("dw_w", 16, 1, 3, 3), w("grp_w", 16, 2, 3, 3), w("mult_w", 32, 1, 3, 3),
             w("pw_w", 8, 32, 1, 1)]
    conv = dict(pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "stem_w"], ["s"], name="stem", **conv),
             helper.make_node("Relu", ["s"], ["s1"], name="relu0"),
             helper.make_node("Conv", ["s1", "dw_w"], ["d"], name="dw", group=16, **conv),
             helper.make_node("Relu", ["d"], ["d1"], name="relu1"),
             helper.make_node("Conv", ["d1", "grp_w"], ["g"], name="grp", group=8, **conv),
             helper.make_node("Relu", ["g"], ["g1"], name="relu2"),
             helper.make_node("Conv", ["g1", "mult_w"], ["m"], name="mult", group=16, **conv),
             helper.make_node("Relu", ["m"], ["m1"], name="relu3"),
             helper.make_node("Conv", ["m1", "pw_w"], ["p"], name="pw"),
             helper.make_node("GlobalAveragePool", ["p"], ["y"], name="pool")]
    g = helper.make_graph(nodes, "dwcnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def saturation_probe(path: Path, groups: int, cin: int, cout: int, k: int = 3) -> float:
    """A QDQ conv whose integer sums saturate int16 if its kernel adds u8 x s8 pairs there:
    every input 255 (scale 1/255, zero point 0), every weight 127 (scale 1/127, per channel).
    Returns the exact value of an inner output pixel for an all-ones input."""
    full = k * k * cin // groups
    inits = [numpy_helper.from_array(np.float32(1 / 255), "xs"), numpy_helper.from_array(np.uint8(0), "xz"),
             numpy_helper.from_array(np.full((cout, cin // groups, k, k), 127, np.int8), "w"),
             numpy_helper.from_array(np.full(cout, 1 / 127, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
             numpy_helper.from_array(np.float32(full / 255 * 1.01), "ys"), numpy_helper.from_array(np.uint8(0), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], group=groups, pads=[k // 2] * 4),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return float(full)
