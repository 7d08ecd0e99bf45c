"""target.npu on tiny ONNX graphs, without the emulator: what it writes and records, and that a
graph with problems left is never written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.errors import StageError  # noqa: E402
from edgekit.export.npu import NpuConfig, TargetNpu  # noqa: E402
from edgekit.runtimes.npu.check import check_file  # noqa: E402
from edgekit.stages.state import Dataset, ModelState  # noqa: E402

RNG = np.random.default_rng(0)


def _state(tmp_path: Path, nodes, outputs, inits=()) -> ModelState:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])], outputs,
                          list(inits))
    path = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    samples = [{"x": RNG.normal(size=(1, 8)).astype(np.float32)} for _ in range(16)]
    return ModelState(torch_model=None, input_names=["x"], output_names=[o.name for o in outputs],
                      example={"x": samples[0]["x"]}, workdir=tmp_path, onnx_path=path,
                      calibration=Dataset("t", samples))


@pytest.mark.parametrize("profile,fmt", [("qnn-htp", "qnn-onnx"), ("intel-npu", "onnx")])
def test_a_linear_layer_becomes_a_clean_integer_graph(tmp_path, profile, fmt):
    w = numpy_helper.from_array(RNG.normal(size=(4, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.normal(size=4).astype(np.float32), "b")
    state = _state(tmp_path, [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
                              helper.make_node("Relu", ["h"], ["y"], name="relu")],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b])
    state, record = TargetNpu().run(state, NpuConfig(kind="target.npu", profile=profile))
    [art] = state.artifacts
    assert art.format == fmt and art.path.is_file() and check_file(art.path, profile) == []
    m = record.measured
    assert m["nodes_before"] == 2 and m["problems_left"] == [] and m["profile"] == profile
    act = "uint16" if profile == "qnn-htp" else "uint8"
    wt = "uint8" if profile == "qnn-htp" else "int8"
    assert m["precision_mix"]["Gemm"] == {f"a:{act}": 1, f"w:{wt}": 1, "bias:int32": 1}
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no scratch files left


def test_problems_left_fail_the_stage_in_one_line_and_write_nothing(tmp_path):
    state = _state(tmp_path, [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                              helper.make_node("NonZero", ["r"], ["idx"], name="find_nonzero")],
                   [helper.make_tensor_value_info("idx", TensorProto.INT64, None)])
    with pytest.raises(StageError) as e:
        TargetNpu().run(state, NpuConfig(kind="target.npu", profile="qnn-htp"))
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 1
    # the Relu stays float (its only reader, NonZero, cannot be quantized), then the NonZero, then
    # the dynamic output: the first node is named
    assert msg.startswith("target.npu (qnn-htp): 3 problem(s) left after rewriting and quantizing; "
                          "first: qnn-htp: node 0 'relu' (Relu): input 'x' is float")
    assert not (tmp_path / "npu_qnn_htp.onnx").exists() and state.artifacts == []
