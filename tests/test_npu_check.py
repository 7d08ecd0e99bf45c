"""NPU profile checks on tiny graphs, through `edgekit inspect --target` as a user runs them:
one line per node a profile refuses, with op type, name, position, why and the fixing rewrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.runtimes import registry  # noqa: E402
from edgekit.runtimes.npu.check import check_file  # noqa: E402
from edgekit.runtimes.npu.profiles import PROFILES  # noqa: E402
from edgekit.runtimes.registry import Problem, RuntimeInfo  # noqa: E402
from tests.onnx_graphs import qdq_conv  # noqa: E402


def _save(path: Path, nodes, inputs, outputs, inits=(), opset: int = 17) -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9), str(path))
    return path


def _vi(name: str, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


@pytest.fixture
def nonzero_graph(tmp_path) -> Path:
    """x -> Relu -> NonZero: the NonZero output's length depends on the data."""
    return _save(tmp_path / "nz.onnx",
                 [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                  helper.make_node("NonZero", ["r"], ["idx"], name="find_nonzero")],
                 [_vi("x", [1, 8])], [_vi("idx", None, TensorProto.INT64)])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_inspect_names_the_nonzero_node_for_every_npu_profile(cli, nonzero_graph, profile):
    r = cli("inspect", nonzero_graph, "--target", profile)
    assert r.exit_code == 1, r.output
    lines = [ln.strip() for ln in r.output.splitlines() if "NonZero" in ln]
    assert len(lines) == 1, r.output
    line = lines[0]
    # op type, node name, position, why, fix, all on the one line
    assert line.startswith(f"{profile}: node 1 'find_nonzero' (NonZero): ")
    assert "depends on how many elements are non-zero" in line and "static shapes only" in line
    assert "; fix: " in line and "TopK with a constant k" in line
    assert "relu" not in r.output.split("find_nonzero")[0].split("problem(s)")[1]  # Relu is fine


def test_inspect_with_two_targets_checks_each(cli, nonzero_graph):
    r = cli("inspect", nonzero_graph, "--target", "qnn-htp", "--target", "intel-npu")
    assert r.exit_code == 1
    assert "nz.onnx on qnn-htp:" in r.output and "nz.onnx on intel-npu:" in r.output


def test_a_clean_quantized_graph_passes_with_exit_0(cli, tmp_path):
    """Conv with uint8 QDQ everywhere, per-channel int8 weights: what both profiles take."""
    path = qdq_conv(tmp_path / "ok.onnx", channels=4, size=8)
    for profile in PROFILES:
        r = cli("inspect", path, "--target", profile)
        assert r.exit_code == 0, r.output
        assert f"ok.onnx on {profile}: 0 problem(s) — runs as is" in r.output


def _qdq_gemm(tmp_path: Path, wtype, per_channel: bool) -> Path:
    np_t = {TensorProto.INT8: np.int8, TensorProto.UINT16: np.uint16}[wtype]
    w = np.ones((4, 6), np_t)
    scale = np.full(4, 0.01, np.float32) if per_channel else np.float32(0.01)
    zp = np.zeros(4, np_t) if per_channel else np.zeros((), np_t)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(scale, "w_s"),
             numpy_helper.from_array(zp, "w_zp"),
             numpy_helper.from_array(np.float32(0.02), "a_s"), numpy_helper.from_array(np.uint8(128), "a_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "a_s", "a_zp"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], name="dq_w",
                              **({"axis": 0} if per_channel else {})),
             helper.make_node("Gemm", ["xd", "wd"], ["y"], name="fc", transB=1),
             helper.make_node("QuantizeLinear", ["y", "a_s", "a_zp"], ["yq"], name="q_out"),
             helper.make_node("DequantizeLinear", ["yq", "a_s", "a_zp"], ["out"], name="dq_out")]
    return _save(tmp_path / "gemm.onnx", nodes, [_vi("x", [1, 6])], [_vi("out", [1, 4])], inits, opset=21)


def test_per_channel_gemm_weights_are_refused_on_qnn_htp_only(tmp_path):
    path = _qdq_gemm(tmp_path, TensorProto.INT8, per_channel=True)
    [p] = check_file(path, "qnn-htp")
    assert (p.op_type, p.node, p.position) == ("DequantizeLinear", "dq_w", 2)
    assert "feeds Gemm" in p.why and "only on Conv, ConvTranspose" in p.why and "per tensor" in p.fix
    assert check_file(path, "intel-npu") == []


def test_16_bit_weights_are_refused_on_qnn_htp(tmp_path):
    path = _qdq_gemm(tmp_path, TensorProto.UINT16, per_channel=False)
    [p] = check_file(path, "qnn-htp")
    assert p.node == "dq_w" and "is uint16" in p.why and "uint8, int8" in p.why


def test_dynamic_inputs_erf_and_infinite_masks_are_named_with_their_rewrite(tmp_path):
    nodes = [helper.make_node("Erf", ["x"], ["e"], name="erf"),
             helper.make_node("Where", ["m", "zero", "ninf"], ["bias"], name="mask"),
             helper.make_node("Add", ["e", "bias"], ["y"], name="add")]
    inits = [numpy_helper.from_array(np.float32(0), "zero"), numpy_helper.from_array(np.float32(-np.inf), "ninf")]
    path = _save(tmp_path / "dyn.onnx", nodes, [_vi("x", ["batch", 8]), _vi("m", ["batch", 8], TensorProto.BOOL)],
                 [_vi("y", ["batch", 8])], inits)
    problems = check_file(path, "qnn-htp")
    by_node = {p.node: p for p in problems}
    assert sum(1 for p in problems if not p.node and "dynamic shape" in p.why) == 3  # x, m, y
    assert "fix_input_shapes" in next(p for p in problems if "dynamic shape" in p.why).fix
    assert "not in the qnn-htp operator table" in by_node["erf"].why and "fuse_Gelu" in by_node["erf"].fix
    assert "infinite value" in by_node["mask"].why and "finite_mask" in by_node["mask"].fix
    assert any("graph is float" in p.why for p in problems)


def test_unknown_target_and_a_bare_file_without_target_are_one_line_usage_errors(cli, nonzero_graph):
    r = cli("inspect", nonzero_graph, "--target", "hexagon")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: --target 'hexagon': unknown target; allowed: " + ", ".join(
            [*PROFILES, *(n for n, i in registry.REGISTRY.items() if i.compatibility and n not in PROFILES)])]
    r = cli("inspect", nonzero_graph)
    assert r.exit_code == 2 and "give --target to check it" in r.output and len(r.output.strip().splitlines()) == 1


def fake_lint(path: Path) -> list[Problem]:
    return [Problem("fake-rt", "fake runtime refuses everything", "Relu", "relu", 0, "none")]


def test_any_registered_runtime_check_is_reachable_by_name(cli, nonzero_graph):
    registry.register(RuntimeInfo(name="fake-rt", where="x:Y", formats=("onnx",), extra="onnx", summary="test",
                                  compatibility="tests.test_npu_check:fake_lint"))
    try:
        r = cli("inspect", nonzero_graph, "--target", "fake-rt")
    finally:
        registry.unregister("fake-rt")
    assert r.exit_code == 1
    assert "fake-rt: node 0 'relu' (Relu): fake runtime refuses everything; fix: none" in r.output
