"""INT8 that is right on every declared CPU class: the overflow fix quantize.int8 and
target.openvino choose for deploy.cpus, the refusal of schemes that saturate there, the run-time
option travelling with the artifact, and an emulated verify that catches saturation."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgekit.checks import emulate
from edgekit.quantize.overflow import AUTO_FIX, choose_overflow_fix
from edgekit.runtimes.cpu_classes import local_class
from edgekit.runtimes.device_side import int32_dot_products
from tests.conftest import fast_profile, write_recipe

ALL_X86 = ["x86-sse", "x86-avx2", "x86-vnni", "x86-amx"]


def test_auto_fixes_only_where_a_class_saturates():
    c = choose_overflow_fix("auto", "int8", ALL_X86)
    assert c.fix == AUTO_FIX and "x86-avx2" in c.reason
    assert c.reduce_range == (AUTO_FIX == "reduce_range")
    c = choose_overflow_fix("auto", "int8", ["x86-vnni", "x86-amx", "arm64"])
    assert (c.fix, c.reduce_range, c.ort_options) == ("none", False, {})
    c = choose_overflow_fix("auto", "uint8", ALL_X86)
    assert c.fix == "none" and "U8U8" in c.reason
    c = choose_overflow_fix("runtime", "int8", ALL_X86)
    assert c.runner_options == {"session_config": {"session.x64quantprecision": "1"}} and not c.reduce_range
    c = choose_overflow_fix("reduce_range", "int8", ["x86-vnni"])
    assert c.reduce_range and "set in the recipe" in c.reason


def _saturating(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["stages"][1]["overflow_fix"] = "none"
    return data


def test_validate_refuses_a_scheme_that_saturates_on_a_declared_class(cli, tmp_path, int8_pc_data):
    path = write_recipe(tmp_path, _saturating(int8_pc_data))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {path}: stages[1] (quantize.int8): overflow_fix 'none' with full-range int8 weights saturates "
        "int16 on x86-avx2 (u8 x s8 pairs reach 2*255*127 > 32767); allowed there: auto, reduce_range, "
        "reduce_range_dw8, runtime, or weights.dtype uint8; choose another setting, narrow deploy.cpus, or set deploy.accept_saturation: true"]


def test_the_same_scheme_is_fine_where_nothing_saturates_or_when_accepted(cli, tmp_path, int8_pc_data):
    data = _saturating(int8_pc_data)
    data["deploy"] = {"cpus": ["x86-vnni", "arm64"]}
    assert cli("validate", write_recipe(tmp_path, data, "a.yaml")).exit_code == 0
    data["deploy"] = {"cpus": ["x86-avx2"], "accept_saturation": True}
    assert cli("validate", write_recipe(tmp_path, data, "b.yaml")).exit_code == 0
    data["deploy"] = {"cpus": ["x86-avx3"]}
    result = cli("validate", write_recipe(tmp_path, data, "c.yaml"))
    assert result.exit_code == 2 and "deploy.cpus[0]: got 'x86-avx3'; allowed: 'x86-sse', 'x86-avx2'" in result.output


def test_openvino_overflow_fix_refused_where_it_saturates(cli, tmp_path, int8_pc_data):
    data = copy.deepcopy(int8_pc_data)
    data["stages"] = [data["stages"][0], {"kind": "target.openvino", "precision": "int8", "overflow_fix": "disable"}]
    data["targets"] = ["openvino"]
    result = cli("validate", write_recipe(tmp_path, data))
    assert result.exit_code == 2
    assert "stages[1] (target.openvino): overflow_fix 'disable' leaves full-range int8 weights" in result.output


def test_runtime_fix_travels_with_the_artifact(cli, tmp_path, int8_pc_data):
    """overflow_fix: runtime keeps full-range weights and stores the ONNX Runtime session option
    in the manifest; verify, profile and the device-side runner all apply it."""
    data = fast_profile(copy.deepcopy(int8_pc_data))
    data["stages"][1]["overflow_fix"] = "runtime"
    data["targets"] = ["onnxruntime"]
    out = tmp_path / "out"
    result = cli("compress", "--recipe", write_recipe(tmp_path, data), "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    root = out / "digits-cnn-int8"
    m = json.loads((root / "manifest.json").read_text())
    int8 = next(a for a in m["artifacts"] if a["name"] == "int8")
    assert int8["runtime_options"] == {"onnxruntime": {"session_config": {"session.x64quantprecision": "1"}}}
    measured = m["stages"][1]["measured"]
    assert measured["weight_bits"] == 8 and measured["overflow_fix"] == "runtime"
    # the subprocess runner that profiled it opened its session with the option
    assert m["profile"]["int8/onnxruntime"]["backend"]["session_config"] == {"session.x64quantprecision": "1"}
    result = cli("verify", root)
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(emulate.qemu_binary() is None and local_class() != "x86-avx2",
                    reason="needs an x86-avx2 CPU or qemu-user to emulate one")
def test_forced_saturating_scheme_fails_verify_on_avx2_and_names_the_class(cli, tmp_path, int8_pc_data):
    """Full-range U8S8 without a fix, accepted explicitly: verification on x86-avx2 (emulated
    here, or native on such a machine) catches the saturation and nothing is written."""
    data = fast_profile(_saturating(int8_pc_data), emulate=True)
    data["deploy"] = {"cpus": ["x86-avx2"], "accept_saturation": True}
    data["targets"] = ["onnxruntime"]
    data["verify"]["emulate_samples"] = 64
    out = tmp_path / "out"
    result = cli("compress", "--recipe", write_recipe(tmp_path, data), "--out", out, "--quiet")
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: verify: artifact 'int8' on onnxruntime") and "x86-avx2" in line, line
    assert "below verify.cosine_min" in line
    assert not (out / "digits-cnn-int8").exists()


def test_dynamic_int8_auto_uses_the_runtime_option_for_per_tensor_weights():
    """Per-tensor 7-bit weights cost MiniLM 0.09 cosine (benchmarks/quantize_ort.py): dynamic
    INT8 keeps full-range weights and carries the session option instead."""
    from edgekit.quantize.dynamic_int8 import DynamicInt8Config

    c = choose_overflow_fix("auto", "int8", ALL_X86, auto="runtime")
    assert c.fix == "runtime" and c.runner_options and "session.x64quantprecision" in c.reason
    assert DynamicInt8Config(kind="quantize.dynamic").saturation_problem(ALL_X86) is None
    assert "x86-avx2" in DynamicInt8Config(kind="quantize.dynamic", overflow_fix="none").saturation_problem(ALL_X86)


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_cands = st.lists(st.tuples(st.floats(0.5, 1.0), st.floats(0.01, 10.0)), min_size=1, max_size=4)


@given(_cands, st.floats(0.0, 1.0))
def test_the_choice_is_the_most_faithful_scheme_within_the_margin_of_the_fastest(raw, margin):
    from edgekit.quantize.scheme_choice import Candidate, pick

    cands = [Candidate(f"s{i}", cos, ms) for i, (cos, ms) in enumerate(raw)]
    best = pick(cands, margin)
    fastest = min(c.median_ms for c in cands)
    assert best.median_ms <= fastest * (1 + margin)  # never slower than the margin allows
    within = [c for c in cands if c.median_ms <= fastest * (1 + margin)]
    assert best.cosine_mean == max(c.cosine_mean for c in within)  # and none within it is more faithful


_timed = st.lists(st.tuples(st.floats(0.5, 1.0), st.lists(st.floats(0.01, 10.0), min_size=3, max_size=3)),
                  min_size=1, max_size=4)


@given(_timed, st.floats(0.0, 1.0))
def test_with_rounds_a_scheme_is_too_slow_only_if_it_is_so_in_every_round(raw, margin):
    from edgekit.quantize.scheme_choice import Candidate, pick

    cands = [Candidate(f"s{i}", cos, float(np.median(ms)), tuple(ms)) for i, (cos, ms) in enumerate(raw)]
    best = pick(cands, margin)
    fastest = [min(c.round_ms[i] for c in cands) for i in range(3)]

    def within(c):
        return any(t <= f * (1 + margin) for t, f in zip(c.round_ms, fastest))

    assert within(best)
    assert best.cosine_mean == max(c.cosine_mean for c in cands if within(c))


def test_a_scheme_as_fast_but_for_one_noisy_round_is_not_dropped():
    from edgekit.quantize.scheme_choice import Candidate, pick

    faithful = Candidate("runtime", 0.9994, 0.100, (0.080, 0.100, 0.100))
    coarse = Candidate("reduce_range", 0.9990, 0.085, (0.085, 0.085, 0.086))
    assert pick([faithful, coarse], 0.10).scheme == "runtime"  # within 10% in one round of three (1.18x by medians)
    slow = Candidate("runtime", 0.9994, 0.120, (0.120, 0.110, 0.120))
    assert pick([slow, coarse], 0.10).scheme == "reduce_range"  # slower by > 10% in every round


def test_auto_measures_every_safe_scheme_and_records_them(digits_run):
    """The default recipe deploys to x86-avx2, where full-range U8S8 saturates: auto built the
    three safe schemes, measured each, and the artifact is the chosen one."""
    int8 = next(s for s in digits_run.manifest["stages"] if s["kind"] == "quantize.int8")["measured"]
    cands = {c["scheme"]: c for c in int8["overflow_candidates"]}
    assert set(cands) == {"reduce_range", "u8u8", "runtime"}
    chosen = [c for c in cands.values() if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["scheme"] == int8["overflow_fix"]
    assert all(0.9 < c["cosine_mean"] <= 1.0 and c["median_ms"] > 0 for c in cands.values())
    assert int8["weight_bits"] == (7 if int8["overflow_fix"] == "reduce_range" else 8)
    assert int8["scheme"] == ("U8U8" if int8["overflow_fix"] == "u8u8" else "U8S8")
    art = next(a for a in digits_run.manifest["artifacts"] if a["name"] == "int8")
    assert bool(art["runtime_options"]) == (int8["overflow_fix"] == "runtime")
    assert digits_run.manifest["recipe"]["stages"][1].get("overflow_fix", "auto") == "auto"


def test_only_single_channel_groups_count_as_depthwise(tmp_path):
    from edgekit.quantize.graph import depthwise_weights
    from tests.onnx_graphs import depthwise_cnn

    assert depthwise_weights(depthwise_cnn(tmp_path / "m.onnx")) == ["dw_w"]


def _dw_state(tmp_path, fix: str, cpus: list[str]):
    import numpy as np

    from edgekit.recipe import parse_recipe
    from edgekit.stages.state import Dataset, ModelState
    from tests.onnx_graphs import depthwise_cnn

    work = tmp_path / "models"
    work.mkdir()
    rng = np.random.default_rng(1)
    cal = [{"x": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(16)]
    recipe = parse_recipe({"edgekit": 1, "name": "t", "model": {"onnx": "m.onnx"}, "deploy": {"cpus": cpus},
                           "stages": [{"kind": "quantize.int8", "overflow_fix": fix}],
                           "accuracy": {"metric": "mse", "max_drop": 1.0}})
    return ModelState(torch_model=None, input_names=["x"], output_names=["y"], example=cal[0], workdir=work,
                      onnx_path=depthwise_cnn(work / "fp32.onnx"), calibration=Dataset("cal", cal, None, list(range(16))),
                      recipe=recipe)


def _weight_ints(path) -> dict[str, int]:
    """Largest |int| of each quantized weight, by the float weight's name."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    return {n.output[0].removesuffix("_DequantizeLinear_Output"): int(np.abs(inits[n.input[0]].astype(int)).max())
            for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4}


def test_reduce_range_dw8_keeps_8_bits_only_in_depthwise_convolutions(tmp_path):
    from edgekit.stages.registry import REGISTRY

    stage = REGISTRY["quantize.int8"].load()()
    state = _dw_state(tmp_path, "reduce_range_dw8", ["x86-avx2", "x86-vnni"])
    state, rec = stage.run(state, stage.Config(kind="quantize.int8", overflow_fix="reduce_range_dw8"))
    assert rec.measured["overflow_fix"] == "reduce_range_dw8" and rec.measured["full_range_weights"] == ["dw_w"]
    ints = _weight_ints(state.artifacts[-1].path)
    assert set(ints) == {"stem_w", "dw_w", "grp_w", "mult_w", "pw_w"}, ints
    assert ints["dw_w"] == 127 and all(v <= 64 for k, v in ints.items() if k != "dw_w"), ints


def test_auto_does_not_try_the_depthwise_scheme(tmp_path):
    """reduce_range_dw8 measured less faithful than 7-bit weights on a real depthwise CNN
    (benchmarks/int8_scheme.py): auto measures the other three, even where depthwise convs exist."""
    from edgekit.stages.registry import REGISTRY

    stage = REGISTRY["quantize.int8"].load()()
    state = _dw_state(tmp_path, "auto", ["x86-avx2", "x86-vnni"])
    state, rec = stage.run(state, stage.Config(kind="quantize.int8"))
    assert {c["scheme"] for c in rec.measured["overflow_candidates"]} == {"reduce_range", "u8u8", "runtime"}
    assert "full_range_weights" not in rec.measured


_PROBE = """
import json, sys
import numpy as np, onnxruntime as ort, openvino as ov
out = {}
for name in sys.argv[1:]:
    s = ort.InferenceSession(name, providers=["CPUExecutionProvider"])
    x = np.ones(s.get_inputs()[0].shape, np.float32)
    c = ov.Core().compile_model(name, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out[name] = [float(s.run(None, {"x": x})[0][0, 0, 5, 5]), float(c({"x": x})[0][0, 0, 5, 5])]
print(json.dumps(out))
"""


@pytest.mark.skipif(emulate.qemu_binary() is None, reason="needs qemu-user to emulate x86-avx2")
def test_depthwise_convolutions_do_not_saturate_on_emulated_avx2_where_dense_ones_do(tmp_path):
    """What reduce_range_dw8 rests on, on both runtimes: a depthwise conv with every product at
    255 x 127 sums exactly on x86-avx2, while a dense conv, two channels per group and a channel
    multiplier saturate (so the probe does reach the saturating kernels)."""
    import subprocess
    import sys

    from tests.onnx_graphs import saturation_probe

    cases = {"dw3": (16, 16, 16, 3), "dw7": (16, 16, 16, 7), "dense": (1, 16, 16, 3), "grp2": (8, 16, 8, 3),
             "mult2": (8, 8, 16, 3)}
    exact = {str(tmp_path / f"{n}.onnx"): saturation_probe(tmp_path / f"{n}.onnx", *c) for n, c in cases.items()}
    run = subprocess.run([emulate.qemu_binary(), "-cpu", "Haswell", sys.executable, "-c", _PROBE, *exact],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for path, want in exact.items():
        for value in got[path]:  # onnxruntime, openvino
            if "/dw" in path:
                assert abs(value - want) < 0.01 * want, (path, got[path], want)
            else:
                assert value < 0.7 * want, (path, got[path], want)


def _matmul_model(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    w = np.ones((4, 2), np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [onnx.numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("vnni", [True, False])
def test_the_runtime_option_is_applied_only_on_cpus_without_vnni(tmp_path, monkeypatch, vnni):
    """With VNNI nothing saturates and the option only slows ONNX Runtime down (same outputs):
    the runner skips it there and says so; `every_entry` applies it anyway (to time it)."""
    from edgekit.runtimes import device_side, ort

    monkeypatch.setattr(device_side, "int32_dot_products", lambda: vnni)
    path = _matmul_model(tmp_path / "m.onnx")
    option = {"session.x64quantprecision": "1"}
    for every_entry in (False, True):
        runner = ort.OrtRunner(path, 1, session_config=option, every_entry=every_entry)
        try:
            assert runner.details["session_config"] == option  # what the artifact asks, always recorded
            skipped = runner.details.get("session_config_skipped", {})
            assert (set(skipped) == set(option)) == (vnni and not every_entry), skipped
        finally:
            runner.close()


@pytest.mark.skipif(emulate.qemu_binary() is None, reason="qemu-user not installed (apt-get install qemu-user)")
def test_an_emulated_cpu_without_vnni_is_told_by_cpuid_not_the_hosts_cpuinfo():
    """QEMU user mode passes the host's /proc/cpuinfo through: the VNNI test must read CPUID, or
    an emulated x86-avx2 run on a VNNI host would skip the overflow fix and saturate."""
    import subprocess
    import sys
    from pathlib import Path

    code = "from edgekit.runtimes.device_side import int32_dot_products as f; print(f())"
    out = subprocess.run([emulate.qemu_binary(), "-cpu", "Haswell", sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[1], check=True).stdout
    assert out.strip() == "False"


@pytest.mark.skipif(not int32_dot_products(),
                    reason="needs a CPU with AVX-512 VNNI (where the run-time option is skipped)")
def test_where_vnni_skips_the_option_the_outputs_are_the_same_bit_for_bit(digits_run):
    """The reason a VNNI CPU may skip it: ONNX Runtime's u8 x s8 VNNI kernels and its u8 x u8
    path both sum exactly, so the INT8 file computes the same numbers either way."""
    import numpy as np

    from edgekit.runtimes import ort

    path = digits_run.out_dir / "models" / "int8.onnx"
    x = np.random.default_rng(0).normal(size=(16, 1, 1, 32, 32)).astype(np.float32)
    option = {"session.x64quantprecision": "1"}
    got = []
    for every_entry in (False, True):
        runner = ort.OrtRunner(path, 1, session_config=option, every_entry=every_entry)
        try:
            got.append(np.concatenate([runner.run({"x": s})[0] for s in x]))
        finally:
            runner.close()
    np.testing.assert_array_equal(got[0], got[1])
