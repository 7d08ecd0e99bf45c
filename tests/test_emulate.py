"""Verification under emulated CPU classes (QEMU user-mode)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.checks import emulate
from edgekit.runtimes.cpu_classes import local_class

needs_qemu = pytest.mark.skipif(emulate.qemu_binary() is None, reason="qemu-user not installed (apt-get install qemu-user)")


def test_plan_native_emulated_and_unverified(monkeypatch):
    monkeypatch.setattr(emulate, "qemu_binary", lambda: "/usr/bin/qemu-x86_64")
    monkeypatch.setattr(emulate.platform, "machine", lambda: "x86_64")
    p = emulate.plan(["x86-sse", "x86-avx2", "x86-vnni", "x86-amx", "arm64"], "x86-vnni")
    assert p.emulated == {"x86-sse": "Nehalem", "x86-avx2": "Haswell"}
    assert set(p.unverified) == {"x86-amx", "arm64"}
    assert "QEMU cannot emulate it" in p.unverified["x86-amx"]
    # on an AVX2 machine the VNNI class can be checked nowhere; AVX2 itself runs natively
    p = emulate.plan(["x86-avx2", "x86-vnni"], "x86-avx2")
    assert p.emulated == {} and "x86-vnni" in p.unverified


def test_missing_qemu_is_recorded_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(emulate, "qemu_binary", lambda: None)
    monkeypatch.setattr(emulate.platform, "machine", lambda: "x86_64")
    p = emulate.plan(["x86-avx2"], "x86-vnni")
    assert p.emulated == {}
    assert p.unverified["x86-avx2"] == f"qemu-x86_64 not found: {emulate.INSTALL_HINT}"
    p = emulate.plan(["x86-avx2"], "x86-vnni", enabled=False)
    assert p.unverified["x86-avx2"] == "verify.emulate is off in the recipe"


def test_qemu_warnings_are_not_the_error():
    stderr = ("qemu-x86_64: warning: TCG doesn't support requested feature: CPUID.01H:ECX.pcid [bit 17]\n"
              "Segmentation fault\n")
    assert emulate._first_real_line(stderr) == "Segmentation fault"


@needs_qemu
def test_outputs_under_haswell_match_native(tmp_path):
    """A float model computes the same numbers under emulated AVX2 as natively."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    run = emulate.run_outputs("x86-avx2", [{"key": "m", "runtime": "onnxruntime", "model": str(path), "options": {}},
                                           {"key": "bad", "runtime": "onnxruntime", "model": str(tmp_path / "none.onnx"),
                                            "options": {}}],
                              {"x": x}, threads=1)
    assert run.qemu_model == "Haswell"
    np.testing.assert_allclose(run.outputs["m"], x @ w, rtol=1e-5, atol=1e-5)
    assert "bad" in run.errors and "bad" not in run.outputs  # one model failing does not hide the other


@needs_qemu
def test_default_artifact_verified_on_emulated_avx2(digits_run):
    """The default recipe's INT8 artifact passes verification under emulated x86-avx2 and x86-sse;
    its float artifact is not emulated (no integer kernel computes it) but checked natively at the
    precision each class runs (OpenVINO: f32 off AMX, forced here when this host defaults to
    bf16), and the manifest says which method verified each class, and why."""
    m = digits_run.manifest
    assert m["deploy"]["cpus"] == ["x86-sse", "x86-avx2", "x86-vnni", "x86-amx"]
    for art in m["artifacts"]:
        float_artifact = art["precision"] == "fp32"
        for rt in ("onnxruntime", "openvino"):
            entries = {(v["cpu_class"], v["mode"]) for v in art["verified_on"] if v["runtime"] == rt and v["passed"]}
            method = "native-precision" if float_artifact else "emulated"
            assert ("x86-avx2", method) in entries or local_class() == "x86-avx2", (art["name"], rt, entries)
            assert any(mode == "native" for _, mode in entries)
    fp32_ov = [v for a in m["artifacts"] if a["precision"] == "fp32" for v in a["verified_on"]
               if v["runtime"] == "openvino" and v["mode"] == "native-precision"]
    assert fp32_ov and all(v["precision"] == "f32" for v in fp32_ov if v["cpu_class"] in ("x86-sse", "x86-avx2"))
    skipped = m["deploy"]["not_emulated"]
    assert skipped and all(s["artifact"] == "fp32" and "no integer kernel computes it" in s["reason"] for s in skipped)
    emulated = [v for a in m["artifacts"] for v in a["verified_on"] if v["mode"] == "emulated"]
    assert all(v["emulator"].startswith("qemu-x86_64 -cpu ") and v["cosine_mean"] >= 0.99 for v in emulated)
    fresh = [v for v in emulated if not v.get("from_cache")]
    assert all(0 <= v["model_load_seconds"] <= v["model_seconds"] for v in fresh)
    if local_class() != "x86-amx":
        assert "x86-amx" in m["deploy"]["not_verified"]
    int8 = next(s for s in m["stages"] if s["kind"] == "quantize.int8")["measured"]
    assert int8["overflow_fix"] in ("reduce_range", "runtime", "u8u8") and "x86-avx2" in int8["overflow_fix_reason"]
    text = (digits_run.out_dir / "report.md").read_text()
    assert "## Where it is known good" in text and "| x86-avx2 | emulated |" in text


def _copy(run, tmp_path):
    import shutil

    dst = tmp_path / "art"
    shutil.copytree(run.out_dir, dst)
    return dst


@needs_qemu
def test_verify_cli_emulated_class_is_recorded(cli, digits_run, tmp_path):
    import json

    art = _copy(digits_run, tmp_path)
    m = json.loads((art / "manifest.json").read_text())
    for a in m["artifacts"]:  # as if built elsewhere, without emulation
        a["verified_on"] = [v for v in a["verified_on"] if v["cpu_class"] != "x86-avx2"]
    (art / "manifest.json").write_text(json.dumps(m))
    result = cli("verify", art, "--cpu", "x86-avx2", "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    assert "emulated" in result.output
    m = json.loads((art / "manifest.json").read_text())
    for a in m["artifacts"]:
        got = [v for v in a["verified_on"] if v["cpu_class"] == "x86-avx2"]
        assert len(got) == 1 and got[0]["by"] == "edgekit verify"
        assert got[0]["runtime"] == "onnxruntime" and got[0]["passed"]
        if a["precision"] == "fp32":  # as compress does: not emulated, checked natively as stored
            assert got[0]["mode"] == "native-precision" and got[0]["precision"] == "fp32 as stored"
        else:  # compress emulated the INT8 bytes on these samples: verify answers from that run
            assert got[0]["mode"] == "emulated"
            assert got[0]["from_cache"] is True and got[0]["seconds"] == 0.0 and got[0]["emulated_at"]


def test_verify_cli_float_artifacts_at_another_class_precision(cli, digits_run, tmp_path):
    """`verify --cpu x86-amx` of OpenVINO's float artifact needs no QEMU: it is checked at the
    bf16 an AMX CPU computes it in, forced here, or refused in one line where this CPU cannot
    compute bf16; an INT8 artifact beside it still needs emulation, which no QEMU model of AMX
    gives, so asking for both is refused."""
    import json

    import openvino

    if local_class() == "x86-amx":
        pytest.skip("this host is x86-amx: that class is verified natively here")
    art = _copy(digits_run, tmp_path)
    m = json.loads((art / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["precision"] == "fp32"]
    (art / "manifest.json").write_text(json.dumps(m))
    result = cli("verify", art, "--cpu", "x86-amx", "--runtime", "openvino")
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert result.exit_code == 0, result.output
        got = [v for v in json.loads((art / "manifest.json").read_text())["artifacts"][0]["verified_on"]
               if v["cpu_class"] == "x86-amx" and v["runtime"] == "openvino"]
        assert [(v["mode"], v["precision"], v["passed"], v["by"]) for v in got] == [
            ("native-precision", "bf16", True, "edgekit verify")]
    else:
        assert result.exit_code == 4 and "which this machine cannot compute" in result.output
    both = cli("verify", digits_run.out_dir, "--cpu", "x86-amx", "--runtime", "openvino")
    assert both.exit_code == 4 and "--cpu x86-amx: cannot verify here: no x86-amx CPU here and QEMU cannot" in both.output


def test_verify_cli_refuses_unknown_and_impossible_classes(cli, digits_run):
    result = cli("verify", digits_run.out_dir, "--cpu", "x86-avx9")
    assert result.exit_code == 2
    assert "--cpu 'x86-avx9' is not a CPU class; allowed: x86-sse, x86-avx2, x86-vnni, x86-amx, arm64" in result.output
    other = "x86-amx" if local_class() != "x86-amx" else "arm64"
    result = cli("verify", digits_run.out_dir, "--cpu", other)
    assert result.exit_code == 4
    assert f"--cpu {other}: cannot verify here: no {other} CPU here" in result.output


def test_inspect_warns_when_this_class_was_never_verified(cli, digits_run, tmp_path):
    import json

    art = _copy(digits_run, tmp_path)
    m = json.loads((art / "manifest.json").read_text())
    for a in m["artifacts"]:
        a["verified_on"] = [v for v in a["verified_on"] if not v["cpu_class"].startswith(local_class())]
    (art / "manifest.json").write_text(json.dumps(m))
    result = cli("inspect", art)
    assert result.exit_code == 0
    assert f"warning: this machine is {local_class()}, which artifact(s) fp32, int8 were not verified on" in result.output
    result = cli("inspect", digits_run.out_dir)
    assert "warning: this machine is" not in result.output


@needs_qemu
def test_a_budget_too_small_for_the_minimum_is_not_verified_never_passed(tmp_path):
    """Each model runs for its share of the class's budget (at least one sample); fewer samples
    than the minimum is "not verified: budget"; a budget that fits runs them all, recorded."""
    import onnx
    from onnx import TensorProto, helper

    w = np.ones((8, 4), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.ones((20, 8), np.float32)
    models = [{"key": k, "runtime": "onnxruntime", "model": str(path), "options": {}} for k in ("a", "b")]
    tight = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=1e-6)
    assert [len(tight.outputs[k]) for k in ("a", "b")] == [1, 1] and tight.ran["a"]["samples"] == 1
    why = emulate.budget_shortfall(tight, "a", 8, 1e-6)
    assert why.startswith("not verified: budget: 1 sample(s) in ") and "fewer than verify.emulate_min_samples 8" in why
    roomy = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=600)
    assert roomy.ran["b"]["samples"] == 20 and emulate.budget_shortfall(roomy, "b", 8, 600) is None


def test_fewer_emulated_samples_than_the_minimum_is_refused_in_the_recipe(tmp_path):
    import yaml

    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe
    from tests.conftest import RECIPES

    data = yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())
    data["verify"]["emulate_samples"] = 4
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=r"verify: .*emulate_samples 4 is below emulate_min_samples 8: no artifact "
                                          r"could count as verified under emulation"):
        load_recipe(path)


_SLOW_LAUNCHER = '''
import importlib.util, os, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("device_side", sys.argv[2])
ds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ds)


class Slow:
    """A model whose second sample takes far longer than any budget (a window under QEMU)."""
    load_s = 0.0

    def __init__(self):
        self.calls = 0

    def run(self, feeds):
        self.calls += 1
        time.sleep(float(os.environ.get("SLOW_FIRST", "0.2")) if self.calls == 1 else 120)
        return [feeds["x"] * 2]


ds._open = lambda job: Slow()
sys.exit(ds.main(sys.argv[3:]))
'''


def test_a_sample_past_the_deadline_is_stopped_and_what_finished_is_kept(tmp_path, monkeypatch):
    """The budget is a deadline, not a check between samples: a job whose sample in flight would
    run for minutes is stopped at its budget plus the grace, and answers with the samples that
    finished before it (here 1 of 5: "not verified: budget", never a pass)."""
    import time

    launcher = tmp_path / "slow.py"
    launcher.write_text(_SLOW_LAUNCHER)
    monkeypatch.setattr(emulate, "GRACE_S", 1.0)
    models = [{"key": k, "runtime": "onnxruntime", "model": str(tmp_path / "m.onnx"), "options": {}} for k in "ab"]
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    t0 = time.perf_counter()
    run = emulate.run_job("x86-avx2", [__import__("sys").executable, str(launcher)], None, models, {"x": x}, 1, 2.0)
    assert time.perf_counter() - t0 < 30
    assert "stopped at its deadline (verify.emulate_budget_s 2 s + 1 s)" in run.stopped
    np.testing.assert_array_equal(run.outputs["a"], x[:1] * 2)
    assert "b" not in run.outputs and run.ran["a"]["samples"] == 1
    assert run.record("a")["stopped"] == run.stopped
    why = emulate.budget_shortfall(run, "b", 4, 2.0)
    assert why.startswith("not verified: budget: 0 sample(s) in its share (the job was stopped at its deadline)")
    # nothing finished at all: still each model's "not verified: budget", not a failure of QEMU
    none = emulate.run_job("x86-avx2", [__import__("sys").executable, str(launcher)], {"SLOW_FIRST": "120"}, models,
                           {"x": x}, 1, 2.0)
    assert none.outputs == {} and none.stopped
    assert emulate.budget_shortfall(none, "a", 4, 2.0).startswith("not verified: budget: 0 sample(s)")


def test_a_job_whose_verdict_is_settled_stops_at_its_budget_not_its_grace(tmp_path):
    """Past the budget the sample in flight may finish (GRACE_S), unless even with it the model
    would stay short of the minimum: then the verdict is already "not verified: budget", and the
    job stops at the budget, saying so, for the count it relied on."""
    import sys
    import time

    launcher = tmp_path / "slow.py"
    launcher.write_text(_SLOW_LAUNCHER)
    models = [{"key": k, "runtime": "onnxruntime", "model": str(tmp_path / "m.onnx"), "options": {}} for k in "ab"]
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    t0 = time.perf_counter()
    run = emulate.run_job("x86-avx2", [sys.executable, str(launcher)], None, models, {"x": x}, 1, 2.0, min_samples=4)
    assert time.perf_counter() - t0 < emulate.GRACE_S / 2
    assert run.stopped.startswith("stopped at its budget (verify.emulate_budget_s 2 s): a had 1 sample(s)")
    assert run.cut_for == 4 and run.ran["a"]["samples"] == 1 and "b" not in run.outputs
    assert emulate.budget_shortfall(run, "a", 4, 2.0).startswith("not verified: budget: 1 sample(s)")
