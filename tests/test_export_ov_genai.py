"""A causal LM to OpenVINO GenAI: the stateful IR edgekit converts itself (KV cache as state,
zero initial state), NNCF weight compression on calibration text, the tokenizer IRs, and the
`openvino-genai` runtime row (LLMPipeline for generation, the compiled IR for logits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino_genai")
pytest.importorskip("openvino_tokenizers")

from tests.test_lm_pipeline import _recipe  # noqa: E402

F32 = {"inference_precision": "f32", "kv_cache_precision": "f32"}


def _torch_logits(model_dir: Path, ids: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.inference_mode():
        return model(torch.from_numpy(ids[None])).logits[0].numpy()


@pytest.fixture(scope="module")
def stateful(tiny_llama_dir, tmp_path_factory):
    import openvino as ov
    from transformers import AutoModelForCausalLM

    from edgekit.export import ov_stateful

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    xml = tmp_path_factory.mktemp("stateful") / "openvino_model.xml"
    ov.save_model(ov_stateful.convert(model), str(xml), compress_to_fp16=False)
    return xml


def test_the_converted_model_is_stateful_with_the_inputs_llmpipeline_feeds(stateful):
    import openvino as ov

    m = ov.Core().read_model(str(stateful))
    assert [p.get_any_name() for p in m.inputs] == ["input_ids", "attention_mask", "position_ids", "beam_idx"]
    assert [o.get_any_name() for o in m.outputs] == ["logits"]
    assert sum(op.get_type_name() == "ReadValue" for op in m.get_ops()) == 2 * 2  # keys and values, 2 layers


def test_stateful_logits_match_torch_whole_and_token_by_token_at_other_lengths_than_traced(stateful, tiny_llama_dir):
    """Traced at 3 cached + 4 new tokens; checked at a 100-token window, then a 20-token prompt
    followed by 80 single tokens through the state (f32 inference and KV cache)."""
    import openvino as ov

    ids = np.random.RandomState(0).randint(0, 500, size=100)
    ref = _torch_logits(tiny_llama_dir, ids)
    req = ov.Core().compile_model(str(stateful), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "KV_CACHE_PRECISION": "f32"}).create_infer_request()

    def step(chunk: np.ndarray, start: int) -> np.ndarray:
        return req.infer({"input_ids": chunk[None], "attention_mask": np.ones((1, start + len(chunk)), np.int64),
                          "position_ids": np.arange(start, start + len(chunk))[None],
                          "beam_idx": np.zeros(1, np.int32)})["logits"][0]

    req.reset_state()
    np.testing.assert_allclose(step(ids, 0), ref, atol=1e-4)
    req.reset_state()
    parts = [step(ids[:20], 0)] + [step(ids[t:t + 1], t) for t in range(20, 100)]
    np.testing.assert_allclose(np.concatenate(parts), ref, atol=1e-4)


@pytest.fixture(scope="module")
def ov_run(tmp_path_factory, tiny_llama_dir):
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("ovlm")
    recipe = _recipe(tmp, tiny_llama_dir, [
        {"kind": "target.openvino-genai", "weights": "fp32", "name": "fp32", **F32},
        {"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": 32, "name": "int4",
         "data_aware": ["awq", "scale_estimation"]},
    ], targets=["openvino-genai"])
    import yaml

    data = yaml.safe_load(recipe.read_text())
    data["data"]["calibration"] = {"builtin": "pydoc_topics", "split": "train", "samples": 4, "seq_len": 64}
    recipe.write_text(yaml.safe_dump(data))
    return run(load_recipe(recipe), tmp / "out")


def test_an_openvino_genai_recipe_builds_verifies_and_profiles(ov_run):
    m = ov_run.manifest
    assert [(a["name"], a["format"], a["runs_on"]) for a in m["artifacts"]] == [
        ("fp32", "openvino-genai", ["openvino-genai"]), ("int4", "openvino-genai", ["openvino-genai"])]
    fp32, int4 = m["metrics"]["fp32"]["openvino-genai"], m["metrics"]["int4"]["openvino-genai"]
    # at f32 with an f32 KV cache the IR computes what torch computes, and LLMPipeline's greedy
    # tokens are torch's, token for token
    assert fp32["kl_mean"] < 1e-6 and fp32["top1_agreement"] == 1.0
    assert fp32["continuations"]["identical"] == fp32["continuations"]["prompts"] == 3
    assert int4["kl_mean"] > fp32["kl_mean"]
    stage = m["stages"][1]["measured"]
    assert stage["calibration_windows"] == 4 and stage["weight_matrices_by_type"]["i4"] > 0
    assert stage["weight_bytes_by_type"]["u8"] > 0  # embeddings and lm_head at the int8 backup
    assert set(m["generation"]) == {"reference/pytorch", "fp32/openvino-genai", "int4/openvino-genai"}
    for a in m["artifacts"]:
        folder = ov_run.out_dir / Path(a["path"]).parent
        for f in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml", "config.json",
                  "tokenizer.json"):
            assert (folder / f).is_file(), (a["name"], f)


def test_the_precision_that_ran_is_recorded_for_each_artifact(ov_run):
    import openvino as ov

    by_name = {a["name"]: a["verified_on"][0]["runner"] for a in ov_run.manifest["artifacts"]}
    assert by_name["fp32"]["inference_precision"] == "f32" and by_name["fp32"]["kv_cache_precision"] == "f32"
    default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    assert by_name["int4"]["inference_precision"] in default.replace("bfloat16", "bf16").replace("float32", "f32")
    assert ov_run.manifest["generation"]["fp32/openvino-genai"]["details"]["inference_precision"] == "f32"
    assert "| fp32 | openvino-genai (f32, KV f32) |" in (ov_run.out_dir / "report.md").read_text()


def test_the_runner_generates_what_llmpipeline_generates_from_text(ov_run):
    """The runner feeds token ids; LLMPipeline given the text (its own tokenizer IR) agrees."""
    import openvino_genai as og

    from edgekit.runtimes import open_runner

    folder = ov_run.out_dir / "models" / "fp32"
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "BPE"
    pipe = og.LLMPipeline(str(folder), "CPU", INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    cfg = og.GenerationConfig()
    cfg.max_new_tokens, cfg.apply_chat_template, cfg.do_sample = 6, False, False
    ids = np.asarray(pipe.get_tokenizer().encode("def main():").input_ids.data)[0]
    runner = open_runner("openvino-genai", folder / "openvino_model.xml", 2, precision="f32", kv_cache="f32")
    try:
        timings: list[float] = []
        out = runner.generate(ids, 6, timings)
    finally:
        runner.close()
    assert len(timings) == len(out) and all(t > 0 for t in timings)
    text = pipe.generate("def main():", cfg)
    assert pipe.get_tokenizer().decode(out) == text


def test_data_aware_compression_without_calibration_text_is_one_data_error(tmp_path, tiny_llama_dir):
    from edgekit.errors import DataError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    recipe = _recipe(tmp_path, tiny_llama_dir, [{"kind": "target.openvino-genai", "weights": "int4_sym",
                                                 "group_size": 32, "data_aware": ["awq"]}], targets=["openvino-genai"])
    with pytest.raises(DataError, match=r"target.openvino-genai: awq needs calibration text: set data.calibration"):
        run(load_recipe(recipe), tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-lm").exists()


@pytest.mark.parametrize("stage, message", [
    ({"weights": "int8_asym", "group_size": 32}, "group_size applies to weights int4_sym / int4_asym, not int8_asym"),
    ({"data_aware": ["awq", "gptq"]}, "data_aware: gptq and awq cannot be combined; pick one"),
    ({"sensitivity_metric": "hessian_input_activation"}, "sensitivity_metric ranks layers for ratio < 1"),
    ({"group_size": 48}, "group_size must be -1 (per channel) or one of 8, 16, 32, 64, 128, 256, got 48"),
    ({"subset_size": 4}, "subset_size applies with data_aware methods or an activation sensitivity_metric"),
])
def test_bad_openvino_genai_settings_are_one_recipe_line(tmp_path, tiny_llama_dir, stage, message):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    recipe = _recipe(tmp_path, tiny_llama_dir, [{"kind": "target.openvino-genai", **stage}], targets=["openvino-genai"])
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe)
    assert message in str(exc.value) and "stages[0]" in str(exc.value) and "\n" not in str(exc.value)


def test_an_encoder_under_the_openvino_genai_stage_is_refused(tmp_path):
    from edgekit.export.ov_genai import OVGenaiConfig, TargetOVGenai
    from edgekit.errors import RecipeError
    from edgekit.stages.state import ModelState

    state = ModelState(torch_model=None, input_names=[], output_names=[], example={}, workdir=tmp_path)
    with pytest.raises(RecipeError, match="target.openvino-genai needs a causal language model"):
        TargetOVGenai().apply(state, OVGenaiConfig(kind="target.openvino-genai"))


def test_a_folder_without_the_tokenizer_ir_is_refused_by_the_runtime(tmp_path, stateful):
    import shutil

    from edgekit.errors import UsageError
    from edgekit.runtimes import open_runner

    shutil.copy(stateful, tmp_path / "openvino_model.xml")
    with pytest.raises(UsageError, match=r"openvino-genai: .* has no openvino_tokenizer.xml; an openvino-genai "
                                         r"artifact is a folder built by target.openvino-genai"):
        open_runner("openvino-genai", tmp_path / "openvino_model.xml", 2)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma3_text"])
def test_every_family_converts_and_matches_torch_on_openvino_genai(tmp_path, family):
    """Each accepted family at fp32 (f32 inference and KV cache): its logits and its greedy
    continuations through LLMPipeline are PyTorch's. Gemma-3's sliding window (64) is shorter
    than the 64-token windows plus the state, so its mask is exercised."""
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.lm_helpers import tiny_lm_dir

    d = tiny_lm_dir(tmp_path / "m", family, **({"sliding_window": 16} if family == "gemma3_text" else {}))
    recipe = _recipe(tmp_path, d, [{"kind": "target.openvino-genai", "weights": "fp32", **F32}],
                     targets=["openvino-genai"], profile={"enabled": False})
    m = run(load_recipe(recipe), tmp_path / "out").manifest
    r = m["metrics"]["ov_fp32"]["openvino-genai"]
    assert m["source_model"]["family"] == family and r["tokens"] == 3 * 63
    assert r["top1_agreement"] == 1.0 and r["kl_mean"] < 1e-6, r
    assert r["continuations"]["identical"] == 3, r["continuations"]
    # LLMPipeline's paged attention drops a sliding window: such a model runs the IR's own SDPA
    backend = m["artifacts"][0]["runtime_options"].get("openvino-genai", {}).get("attention_backend")
    assert backend == ("sdpa" if family == "gemma3_text" else None), m["stages"][0]["measured"]


def test_the_chat_example_answers_on_openvino_genai(ov_run):
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "chat" / "chat.py"), str(ov_run.out_dir), "int4"],
                          input="def main():\nimport os\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) >= 2


def test_inspect_target_checks_a_generation_folder_offline(ov_run, cli, tmp_path):
    import shutil

    import openvino as ov
    import openvino.opset13 as ops

    from edgekit.runtimes.ov_genai import check

    xml = ov_run.out_dir / "models" / "int4" / "openvino_model.xml"
    ok = cli("inspect", xml, "--target", "openvino-genai")
    assert ok.exit_code == 0 and "0 problem(s)" in ok.output, ok.output
    # a stateless IR beside the tokenizer IRs: LLMPipeline could not keep the KV cache
    d = tmp_path / "stateless"
    shutil.copytree(xml.parent, d)
    x = ops.parameter([1, 4], ov.Type.f32, name="input_ids")
    ov.save_model(ov.Model([ops.relu(x)], [x], "plain"), str(d / "openvino_model.xml"))
    (problem,) = check(d / "openvino_model.xml")
    assert "the IR has no state" in problem.why and problem.fix == "build it with target.openvino-genai"
    (missing,) = check(ov_run.out_dir / "models")
    assert "has no openvino_model.xml" in missing.why
    (d / "openvino_model.xml").write_text("<not an IR")
    (unreadable,) = check(d / "openvino_model.xml")
    assert unreadable.why.startswith("cannot read the model") and unreadable.target == "openvino-genai"
