"""Each NPU rewrite on a tiny graph: it changes what it says it changes, and the outputs stay
within tolerance of the original graph's on onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.export import npu_rewrite as rewrite  # noqa: E402

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _attention(mask_value=-np.inf):
    """scores + Where(mask, 0, -inf) -> Softmax -> Where(IsNaN(p), 0, p) -> MatMul v: the mask and
    NaN guard PyTorch's SDPA export writes."""
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Where", ["mask", "zero", "ninf"], ["bias"], name="mask_where"),
        helper.make_node("Add", ["scores", "bias"], ["masked"], name="add_mask"),
        helper.make_node("Softmax", ["masked"], ["p"], name="softmax", axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"], name="isnan"),
        helper.make_node("Where", ["nan", "zero", "p"], ["p_safe"], name="guard"),
        helper.make_node("MatMul", ["p_safe", "v"], ["out"], name="pv"),
    ]
    inits = [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
             numpy_helper.from_array(np.array([mask_value], np.float32), "ninf")]
    return _model(nodes, [vi("scores", TensorProto.FLOAT, [1, 4, 4]), vi("mask", TensorProto.BOOL, [1, 1, 4]),
                          vi("v", TensorProto.FLOAT, [1, 4, 8])],
                  [vi("out", TensorProto.FLOAT, [1, 4, 8])], inits)


def test_finite_mask_and_nan_guard_keep_the_attention_output():
    feeds = {"scores": RNG.normal(size=(1, 4, 4)).astype(np.float32) * 3,
             "mask": np.array([[[False, False, True, True]]]),  # last two keys masked out
             "v": RNG.normal(size=(1, 4, 8)).astype(np.float32)}
    model = _attention()
    [ref] = _run(model, feeds)
    assert rewrite.finite_mask(model, -100.0) == 1
    assert rewrite.nan_guard(model) == 1
    assert "IsNaN" not in _ops(model) and _ops(model).count("Where") == 1  # only the mask's Where is left
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.isfinite(consts["ninf"]).all() and consts["ninf"][0] == -100.0
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_nan_guard_leaves_a_guard_that_is_not_after_a_softmax():
    vi = helper.make_tensor_value_info
    model = _model([helper.make_node("IsNaN", ["x"], ["n"], name="isnan"),
                    helper.make_node("Where", ["n", "zero", "x"], ["y"], name="guard")],
                   [vi("x", TensorProto.FLOAT, [4])], [vi("y", TensorProto.FLOAT, [4])],
                   [numpy_helper.from_array(np.array([0.0], np.float32), "zero")])
    assert rewrite.nan_guard(model) == 0 and _ops(model) == ["IsNaN", "Where"]  # x itself may be NaN


def test_static_reshape_replaces_a_computed_shape_with_the_inferred_one():
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero_i"], ["b"], name="batch", axis=0),
             helper.make_node("Concat", ["b", "minus1"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten")]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    model = _model(nodes, [vi("x", TensorProto.FLOAT, [2, 3, 4])], [vi("y", TensorProto.FLOAT, None)], inits)
    feeds = {"x": RNG.normal(size=(2, 3, 4)).astype(np.float32)}
    [ref] = _run(model, feeds)
    assert rewrite.static_reshape(model) == 1
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    shape = next(i for i in model.graph.initializer if i.name == reshape.input[1])
    assert numpy_helper.to_array(shape).tolist() == [2, 12]
    assert _ops(model) == ["Reshape"]  # the chain that computed the shape is gone
    [got] = _run(model, feeds)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_to_matmul_keeps_the_product(trans_b):
    vi = helper.make_tensor_value_info
    w = RNG.normal(size=(6, 5) if trans_b else (5, 6)).astype(np.float32)
    model = _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=trans_b)],
                   [vi("x", TensorProto.FLOAT, [3, 5])], [vi("y", TensorProto.FLOAT, [3, 6])],
                   [numpy_helper.from_array(w, "w"), numpy_helper.from_array(RNG.normal(size=6).astype(np.float32), "b")])
    feeds = {"x": RNG.normal(size=(3, 5)).astype(np.float32)}
    [ref] = _run(model, feeds)
    assert rewrite.gemm_to_matmul(model) == 1
    assert _ops(model) == ["MatMul", "Add"]
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_fix_input_shapes_pins_dynamic_dimensions():
    vi = helper.make_tensor_value_info
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                   [vi("x", TensorProto.FLOAT, ["batch", 4])], [vi("y", TensorProto.FLOAT, ["batch", 4])])
    assert rewrite.fix_input_shapes(model, {"x": [1, 4]}) == 1
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 4]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 4]
    assert rewrite.fix_input_shapes(model, {"x": [1, 4]}) == 0  # nothing dynamic is left


def test_the_library_fuses_the_erf_chain_into_gelu(tmp_path):
    """x * 0.5 * (1 + erf(x / sqrt 2)): onnxruntime's qnn_preprocess_model makes it one Gelu."""
    vi = helper.make_tensor_value_info
    c = {"sqrt2": np.float32(np.sqrt(2.0)), "one": np.float32(1.0), "half": np.float32(0.5)}
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["x", "a"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "half"], ["y"], name="mul_half")]
    model = _model(nodes, [vi("x", TensorProto.FLOAT, [2, 8])], [vi("y", TensorProto.FLOAT, [2, 8])],
                   [numpy_helper.from_array(v, k) for k, v in c.items()])
    src, dst = tmp_path / "gelu.onnx", tmp_path / "gelu.pre.onnx"
    onnx.save(model, str(src))
    applied = rewrite.rewrite(src, dst, {"x": [2, 8]}, [])
    assert applied.counts == {"fuse_Gelu": 1}
    out = onnx.load(str(dst))
    assert "Gelu" in _ops(out) and "Erf" not in _ops(out)
    feeds = {"x": RNG.normal(size=(2, 8)).astype(np.float32)}
    np.testing.assert_allclose(_run(out, feeds)[0], _run(model, feeds)[0], rtol=1e-5, atol=1e-6)
