"""The TensorRT lint, offline: graphs quantized the way TensorRT wants pass, and each thing its
ONNX parser or builder refuses is named by node (tiny real graphs from onnxruntime's quantizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.runtimes.registry import get  # noqa: E402
from edgekit.runtimes.tensorrt.lint import errors, lint  # noqa: E402


def conv_net(path: Path, residual: bool = False) -> Path:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1])]
    last = "c2"
    if residual:
        nodes.append(helper.make_node("Add", ["c2", "r1"], ["sum"], name="residual"))
        last = "sum"
    nodes.append(helper.make_node("Relu", [last], ["y"], name="out"))
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def quantized(src: Path, dst: Path, activation: str = "int8", symmetric: bool = True, **extra) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": np.random.default_rng(i).normal(size=(1, 1, 8, 8)).astype(np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8 if activation == "int8" else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, **extra})
    return dst


def test_symmetric_int8_qdq_passes(tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx"), tmp_path / "q.onnx")
    assert errors(lint(q)) == []


def test_nonzero_int8_zero_point_is_named(tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx"), tmp_path / "q.onnx")
    m = onnx.load(q)
    dq = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    zp = next(t for t in m.graph.initializer if t.name == dq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zp).shape, 3, np.int8), zp.name))
    onnx.save(m, tmp_path / "broken.onnx")
    bad = errors(lint(tmp_path / "broken.onnx"))
    # the Q and its DQ share the zero point: both are named
    assert [p.node for p in bad] == [n.name for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                                     and len(n.input) > 2 and n.input[2] == zp.name]
    assert dq.name in [p.node for p in bad]
    assert "int8 zero point must be 0 (element 0 is 3)" in bad[0].why and "symmetric" in bad[0].fix


def test_uint8_activations_are_refused(tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx"), tmp_path / "q.onnx", activation="uint8", symmetric=False)
    bad = errors(lint(q))
    assert bad and all("uint8 Q/DQ" in p.why for p in bad)
    assert "activations: {dtype: int8, symmetric: true}" in bad[0].fix


def test_dynamic_quantization_is_refused_with_the_fix(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "d.onnx"), weight_type=QuantType.QInt8)
    ops = {p.op_type: p for p in errors(lint(tmp_path / "d.onnx"))}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= set(ops)
    assert "quantize.int8" in ops["DynamicQuantizeLinear"].fix


def test_residual_add_with_one_quantized_input_is_a_warning(tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx", residual=True), tmp_path / "q.onnx")
    assert not [p for p in lint(q) if p.op_type == "Add"]  # both inputs quantized: it fuses
    m = onnx.load(q)
    add = next(n for n in m.graph.node if n.name == "residual")
    add.input[1] = "r1"  # the skip branch taken before its Q/DQ, as a partial quantization leaves it
    onnx.save(m, q)
    found = [p for p in lint(q) if p.op_type == "Add"]
    assert found and found[0].severity == "warning" and found[0].node == "residual"
    assert errors(lint(q)) == []


def test_registry_row_uses_the_lint(tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx"), tmp_path / "q.onnx", activation="uint8", symmetric=False)
    assert [p.line() for p in get("tensorrt").check(q)] == [p.line() for p in lint(q)]


def test_inspect_target_tensorrt_names_the_node(cli, tmp_path):
    q = quantized(conv_net(tmp_path / "f.onnx"), tmp_path / "q.onnx", activation="uint8", symmetric=False)
    res = cli("inspect", q, "--target", "tensorrt")
    assert res.exit_code == 1
    assert "q.onnx on tensorrt: 6 problem(s)" in res.output
    assert "tensorrt: node 2 'x_QuantizeLinear' (QuantizeLinear): uint8 Q/DQ" in res.output
    ok = quantized(conv_net(tmp_path / "g.onnx"), tmp_path / "ok.onnx")
    res = cli("inspect", ok, "--target", "tensorrt")
    assert res.exit_code == 0 and "0 problem(s)" in res.output
