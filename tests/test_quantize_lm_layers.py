"""Already-chosen integer weights placed in both runtimes' graphs: the packing round-trips
(property tests), each runtime computes exactly x @ dequantized.T from what was placed, the
bytes read back equal the quantizer's, and layers fused by an exporter are found by value."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.errors import StageError
from edgekit.quantize.lm_layers import QLayer, RowIndex, pack_nibbles, stacked, unpack_nibbles


def layer(rng: np.random.Generator, n: int, k: int, group: int, bits: int, symmetric: bool) -> QLayer:
    ints = rng.integers(1 if symmetric else 0, 2 ** bits, size=(n, k)).astype(np.uint8)
    zeros = (np.full((n, k // group), 2 ** (bits - 1), np.uint8) if symmetric
             else rng.integers(0, 2 ** bits, size=(n, k // group)).astype(np.uint8))
    scales = (rng.random((n, k // group)) * 0.01 + 0.001).astype(np.float16)
    return QLayer(ints, scales, zeros, bits, group)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 15), min_size=1, max_size=9), min_size=1, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) == 1))
def test_nibbles_round_trip_row_by_row(rows):
    values = np.array(rows, dtype=np.uint8)
    packed = pack_nibbles(values)
    assert packed.shape == (values.shape[0], (values.shape[1] + 1) // 2)
    assert np.array_equal(unpack_nibbles(packed, values.shape[1]), values)
    assert np.array_equal(packed[:, 0] & 0x0F, values[:, 0])  # the first value in the low nibble


def test_a_symmetric_layer_dequantizes_around_its_midpoint():
    q = QLayer(np.array([[8, 9, 7, 15]], np.uint8), np.array([[0.5, 2.0]], np.float16),
               np.array([[8, 8]], np.uint8), 4, 2)
    assert q.symmetric
    assert np.array_equal(q.dequantized(), np.array([[0.0, 0.5, -2.0, 14.0]], np.float32))


def test_fused_rows_are_found_in_order_and_a_foreign_weight_is_not():
    rng = np.random.default_rng(0)
    a, b, c = (layer(rng, n, 64, 32, 4, True) for n in (16, 8, 8))
    index = RowIndex({"q": a, "k": b, "v": c})
    fused = np.concatenate([a.dequantized(), b.dequantized(), c.dequantized()])
    assert index.match(fused) == ["q", "k", "v"]
    assert index.match(rng.standard_normal((8, 64)).astype(np.float32)) is None
    broken = fused.copy()
    broken[20, 3] += 1.0  # a row of k changed: the exporter altered the weights
    with pytest.raises(StageError, match="match no quantized layer"):
        index.match(broken)


def test_fused_layers_must_share_bits_and_group():
    rng = np.random.default_rng(1)
    with pytest.raises(StageError, match="need one bit width and group size.*give them the same override"):
        stacked([layer(rng, 8, 64, 32, 4, True), layer(rng, 8, 64, 32, 8, True)], ["q_proj", "k_proj"])


def _matmul_model(weight_t: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight_t.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/model/layers.0/mlp/up_proj/MatMul")],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                              [numpy_helper.from_array(weight_t, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("bits,symmetric", [(4, True), (4, False), (8, True), (8, False)])
def test_onnxruntime_computes_exactly_the_placed_integers(bits, symmetric):
    ort = pytest.importorskip("onnxruntime")
    from edgekit.export.genai_requant import place_layers, read_back

    rng = np.random.default_rng(bits + symmetric)
    up, gate = layer(rng, 48, 128, 32, bits, symmetric), layer(rng, 16, 128, 32, bits, symmetric)
    model = _matmul_model(np.concatenate([up.dequantized(), gate.dequantized()]).T.copy())
    layers = {"up": up, "gate": gate}
    where = place_layers(model, RowIndex(layers), layers, accuracy_level=1)
    assert where["placed"] == {"/model/layers.0/mlp/up_proj/MatMul": ["up", "gate"]}
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    assert read_back(model, where["placed"], layers) == 2
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((3, 128)).astype(np.float32)
    want = x @ np.concatenate([up.dequantized(), gate.dequantized()]).T
    assert np.abs(sess.run(None, {"x": x})[0] - want).max() < 1e-4


@pytest.mark.parametrize("bits,symmetric", [(4, True), (4, False), (8, True), (8, False)])
def test_openvino_runs_the_placed_integers_as_one_compressed_fully_connected(bits, symmetric):
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    from edgekit.export import ov_weights

    rng = np.random.default_rng(10 + bits + symmetric)
    q = layer(rng, 96, 128, 32, bits, symmetric)
    x = ops.parameter([-1, 128], np.float32, name="x")
    model = ov.Model([ops.matmul(x, ops.constant(q.dequantized()), False, True)], [x])
    where = ov_weights.matches(model, RowIndex({"l": q}))
    assert list(where.values()) == [["l"]]
    assert ov_weights.place(model, where, {"l": q}) == 1
    assert ov_weights.read_back(model, {"l": q}) == 1
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert ({"i4"} if symmetric else {"u4"}) <= types if bits == 4 else ({"i8"} if symmetric else {"u8"}) <= types
    # f32 and no dynamic activation quantization: the kernel then computes the weights exactly
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                      "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"})
    xs = rng.standard_normal((4, 128)).astype(np.float32)
    assert np.abs(compiled(xs)[0] - xs @ q.dequantized().T).max() < 1e-4
    # the decompression is folded into the matmul kernel, not run as separate ops
    run = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()]
    assert run.count("FullyConnected") == 1 and "Multiply" not in run and "Eltwise" not in run
