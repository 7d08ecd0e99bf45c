"""SmoothQuant on the ONNX graph: exact in float, and it flattens activation outliers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgekit.quantize.smoothquant import smooth_scales

pos = arrays(np.float64, 16, elements=st.floats(1e-3, 1e3))


@given(pos, pos, st.floats(0.0, 1.0))
def test_scales_balance_activation_and_weight_ranges(a, w, alpha):
    s = smooth_scales(a, w, alpha)
    assert np.all(s > 0)
    # after smoothing the channel's difficulty a*w splits as (a w)^(1-alpha) to the activation
    # and (a w)^alpha to the weight: alpha = 0.5 makes both ranges equal
    np.testing.assert_allclose(a / s, (a * w) ** (1 - alpha), rtol=1e-4)
    np.testing.assert_allclose(w * s, (a * w) ** alpha, rtol=1e-4)


def test_smoothing_keeps_float_outputs_and_shrinks_the_outlier_channel(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.quantize import smoothquant
    from edgekit.runtimes import open_runner

    rng = np.random.default_rng(0)
    wq, wk = (rng.normal(size=(8, 16)).astype(np.float32) for _ in range(2))
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"), helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
         helper.make_node("Add", ["q", "k"], ["y"], name="add")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
        [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(wk, "wk")])
    src, dst = tmp_path / "m.onnx", tmp_path / "s.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(src))
    samples = []
    for _ in range(8):
        x = rng.normal(size=(4, 8)).astype(np.float32)
        x[:, 3] *= 100.0  # one outlier channel, as in transformer activations
        samples.append({"x": x})
    info = smoothquant.apply(src, dst, samples, alpha=0.5)
    assert info["smoothed"][0]["matmuls"] == ["q", "k"]  # one shared scale for one shared input
    a, b = open_runner("onnxruntime", src, 1), open_runner("onnxruntime", dst, 1)
    for s in samples:
        np.testing.assert_allclose(b.run(s)[0], a.run(s)[0], rtol=1e-4, atol=1e-3)
    amax = smoothquant.channel_absmax(dst, ["x_smoothed"], samples)["x_smoothed"]
    before = smoothquant.channel_absmax(src, ["x"], samples)["x"]
    assert amax.max() / np.median(amax) < before.max() / np.median(before) / 5
