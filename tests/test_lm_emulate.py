"""Language-model artifacts on the classes this machine is not: INT4 folders of both generation
runtimes under QEMU (a prefill through the runtime's plain engine, scored against the PyTorch
reference), float folders natively at each precision the class may run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime_genai")

from edgekit.runtimes.cpu_classes import local_class  # noqa: E402


def _recipe(tmp: Path, model_dir: Path, stages: list[dict], targets: list[str], **extra) -> Path:
    data = {"edgekit": 1, "name": "tiny-lm", "model": {"hf": str(model_dir)},
            "data": {"evaluation": {"builtin": "pydoc_topics", "split": "test", "seq_len": 64, "samples": 3}},
            "stages": stages, "targets": targets, "profile": {"enabled": False, "threads": 2}, **extra}
    path = tmp / "lm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


AVX2 = "x86-vnni" if local_class() == "x86-avx2" else "x86-avx2"  # a class this machine is not


@pytest.fixture(scope="module")
def classes_run(tmp_path_factory, tiny_llama_dir):
    from edgekit.checks.emulate import qemu_binary
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    if qemu_binary() is None or AVX2 != "x86-avx2":
        pytest.skip("needs qemu-x86_64 (apt-get install qemu-user) on a machine that is not x86-avx2")
    tmp = tmp_path_factory.mktemp("lmemu")
    recipe = _recipe(tmp, tiny_llama_dir, [
        {"kind": "target.onnxruntime-genai", "precision": "fp32", "name": "fp32"},
        {"kind": "target.onnxruntime-genai", "precision": "int4", "block_size": 32, "name": "int4"},
        {"kind": "target.openvino-genai", "weights": "fp32", "name": "ov_fp32"},
        {"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": 32, "name": "ov_int4"},
    ], ["onnxruntime-genai", "openvino-genai"],
        deploy={"cpus": [local_class(), "x86-avx2"]}, verify={"emulate_min_samples": 2, "emulate_cache": False})
    return run(load_recipe(recipe), tmp / "out")


def _records(manifest: dict, name: str) -> dict[tuple[str, str], dict]:
    art = next(a for a in manifest["artifacts"] if a["name"] == name)
    return {(v["cpu_class"], v["mode"]): v for v in art["verified_on"]}


def test_int4_folders_of_both_runtimes_are_verified_under_emulated_avx2(classes_run):
    m = classes_run.manifest
    for name in ("int4", "ov_int4"):
        recs = _records(m, name)
        native, emulated = recs[(local_class(), "native")], recs[("x86-avx2", "emulated")]
        assert emulated["emulator"] == "qemu-x86_64 -cpu Haswell" and emulated["parity_samples"] == 3
        assert emulated["window_tokens"] == 32 and emulated["metric"] == "perplexity"
        cut = emulated["cut_windows"]  # the same engine and windows natively and under the class
        assert cut["same_next_tokens_share"] > 0.5 and cut["native"]["tokens"] == cut["emulated"]["tokens"] == 3 * 31
        # the same 4-bit weights under another ISA: the distribution moves by far less than INT4 moved it
        assert emulated["kl_mean"] < 2 * native["kl_mean"] + 1e-3 and emulated["top1_agreement"] > 0.5
    assert "x86-avx2" not in m["deploy"]["not_verified"]


def test_float_folders_are_not_emulated_but_checked_at_the_precision_each_class_runs(classes_run):
    m = classes_run.manifest
    ort = _records(m, "fp32")[("x86-avx2", "native-precision")]
    assert ort["precision"] == "fp32 as stored" and ort["kl_mean"] < 1e-6
    ov = _records(m, "ov_fp32")[("x86-avx2", "native-precision")]
    assert ov["precision"] == "f32" and ov["kl_mean"] < 1e-6  # forced where this host defaults to bf16
    reasons = m["deploy"]["not_emulated"]
    assert {(r["artifact"], r["class"]) for r in reasons} >= {("fp32", "x86-avx2"), ("ov_fp32", "x86-avx2")}
    assert all("no integer kernel computes it" in r["reason"] for r in reasons)
    assert json.loads((classes_run.out_dir / "manifest.json").read_text())["deploy"] == m["deploy"]


def _fake_run(outputs_for):
    """emulate.run_outputs stand-in: what QEMU would have answered, per model key."""
    from edgekit.checks import emulate

    def fake(cls, models, inputs, threads, budget_s=None, cache=True, min_samples=None):
        outs = {m["key"]: outputs_for(m, inputs) for m in models}
        return emulate.EmulatedRun(cls, "Haswell", outs, {}, 1.0, "test host",
                                   {k: {"samples": len(v), "seconds": 1.0} for k, v in outs.items()})
    return fake


def _vocab(model_dir: Path) -> int:
    return json.loads((model_dir / "config.json").read_text())["vocab_size"]


@pytest.fixture
def int4_only(tmp_path, tiny_llama_dir, monkeypatch):
    from edgekit.checks import emulate

    monkeypatch.setattr(emulate, "qemu_binary", lambda: "/usr/bin/qemu-x86_64")
    return lambda **verify: _recipe(tmp_path, tiny_llama_dir, [
        {"kind": "target.onnxruntime-genai", "precision": "int4", "block_size": 32, "name": "int4"}],
        ["onnxruntime-genai"], deploy={"cpus": [AVX2, "x86-sse"]}, verify={"emulate_cache": False, **verify})


def test_an_emulated_class_that_changes_the_next_tokens_fails_the_run_and_writes_nothing(int4_only, tmp_path,
                                                                                           monkeypatch, tiny_llama_dir):
    from edgekit.checks import emulate
    from edgekit.errors import ParityError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    if AVX2 != "x86-avx2":
        pytest.skip("this machine is x86-avx2")
    rng = np.random.default_rng(0)
    monkeypatch.setattr(emulate, "run_outputs", _fake_run(
        lambda m, inputs: rng.normal(size=(*inputs["input_ids"].shape, _vocab(tiny_llama_dir))).astype(np.float32)))
    recipe = int4_only(emulate_min_samples=2, **{"top1_agreement_min": 0.5})
    with pytest.raises(ParityError, match=r"artifact 'int4' on onnxruntime-genai under emulated x86-(avx2|sse) "
                                          r"\(qemu (Haswell|Nehalem); the native measures moved by what the class changed on 3 32-token "
                                          r"windows\): next-token top-1 agreement"):
        run(load_recipe(recipe), tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-lm").exists()


def test_fewer_windows_than_the_minimum_is_not_verified_budget_never_passed(int4_only, tmp_path, monkeypatch,
                                                                              tiny_llama_dir):
    from edgekit.checks import emulate
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    if AVX2 != "x86-avx2":
        pytest.skip("this machine is x86-avx2")
    monkeypatch.setattr(emulate, "run_outputs", _fake_run(
        lambda m, inputs: np.zeros((1, inputs["input_ids"].shape[1], _vocab(tiny_llama_dir)), np.float32)))  # one window in the budget
    res = run(load_recipe(int4_only(emulate_min_samples=2)), tmp_path / "out")
    why = res.manifest["deploy"]["not_verified"]
    assert why["x86-avx2"].startswith("int4/onnxruntime-genai: not verified: budget: 1 sample(s)")
    assert not any(v["mode"] == "emulated" for a in res.manifest["artifacts"] for v in a["verified_on"])


def test_feeds_give_each_engine_its_inputs_with_an_empty_kv_cache(tmp_path):
    from edgekit.checks.lm_emulate import feeds

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([], "g", [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["b", 2, "p", "kv_cache_dim"])],
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    (tmp_path / "genai_config.json").write_text(json.dumps({"model": {"decoder": {"head_size": 16}}}))
    windows = np.arange(12).reshape(3, 4)
    f = feeds(windows, [{"runtime": "onnxruntime", "model": str(tmp_path / "model.onnx")}])
    assert f["past_key_values.0.key"].shape == (3, 2, 0, 16) and f["past_key_values.0.key"].dtype == np.float32
    assert f["position_ids"].tolist() == [[0, 1, 2, 3]] * 3 and f["beam_idx"].tolist() == [0, 0, 0]
    assert (f["attention_mask"] == 1).all() and (f["input_ids"] == windows).all()


def test_verify_cpu_reverifies_a_language_model_folder_under_emulation(classes_run, cli, tmp_path):
    """Later or elsewhere, without the source model: the integer folders' prefill under emulated
    x86-avx2, scored by the stored reference argmax and the windows' tokens, recorded by verify;
    float folders are not emulated (nothing class-specific computes them)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(classes_run.out_dir, copy)
    result = cli("verify", str(copy), "--cpu", "x86-avx2")
    assert result.exit_code == 0, result.output
    m = json.loads((copy / "manifest.json").read_text())
    for name in ("int4", "ov_int4"):
        rec = _records(m, name)[("x86-avx2", "emulated")]
        assert rec["by"] == "edgekit verify" and rec["parity_samples"] == 3
        assert rec["cut_windows"]["window_tokens"] == 32
        # the class changes next to nothing here: the estimate sits on the stored native measure
        stored = m["metrics"][name][rec["runtime"]]
        assert abs(rec["perplexity"] / stored["value"] - 1) < 0.02
        assert rec["top1_agreement"] > stored["top1_agreement"] - 0.05
    fp32 = next(a for a in m["artifacts"] if a["name"] == "fp32")
    assert all(v.get("by") != "edgekit verify" or v["mode"] == "native" for v in fp32["verified_on"])


def test_verify_cpu_fails_a_language_model_folder_whose_tolerance_the_class_breaks(classes_run, cli, tmp_path):
    """The same folder with a tolerance no artifact meets: the emulated check raises, in one line,
    naming the class (guards the test above against a check that cannot fail)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(classes_run.out_dir, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["recipe"]["verify"]["top1_agreement_min"] = 1.0
    (copy / "manifest.json").write_text(json.dumps(m))
    result = cli("verify", str(copy), "--cpu", "x86-avx2", "--runtime", "onnxruntime-genai")
    assert result.exit_code != 0
    line = [ln for ln in result.output.splitlines() if "under emulated x86-avx2" in ln]
    assert line and "is below verify.top1_agreement_min 1.0" in line[0], result.output
