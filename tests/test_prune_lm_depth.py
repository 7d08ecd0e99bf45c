"""prune.depth on causal LMs (whole decoder blocks by cosine, angular distance or greedy least
KL) and finetune.lm (distillation healing): the scores as pure functions, the pruned model
written, reloaded and exported with its KV cache by both generation targets (Llama; Gemma-3,
whose per-layer `layer_types` must be cut with the layers), the healing's loss going down, and
one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.prune import lm_depth


def _states(vectors: list[np.ndarray]) -> list[list]:
    import torch

    return [[torch.as_tensor(v, dtype=torch.float64) for v in vectors]]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 7), st.integers(1, 3))
def test_a_block_that_changes_nothing_has_no_influence_and_the_quietest_run_is_chosen(seed, n, run):
    rng = np.random.default_rng(seed)
    h = [rng.normal(size=(5, 8))]
    quiet = int(rng.integers(n))
    for i in range(n):
        h.append(h[-1].copy() if i == quiet else h[-1] + rng.normal(size=(5, 8)) * 3)
    states = _states(h)
    inf = lm_depth.influence(states)
    assert len(inf) == n and inf[quiet] == pytest.approx(0.0, abs=1e-12)
    assert all(0.0 <= v <= 2.0 for v in inf)
    removed, scores = lm_depth.choose(states, "cosine", 1, set(range(n)))
    assert removed == [quiet]
    if run <= n:
        removed, scores = lm_depth.choose(states, "angular", run, set(range(n)))
        ang = [scores["angular"][str(s)] for s in range(n - run + 1)]
        assert removed == list(range(int(np.argmin(ang)), int(np.argmin(ang)) + run))
        assert all(0.0 <= a <= 1.0 for a in ang)


def test_the_angular_choice_keeps_out_of_ignored_blocks():
    rng = np.random.default_rng(0)
    h = [rng.normal(size=(4, 8))]
    for _ in range(4):
        h.append(h[-1] + rng.normal(size=(4, 8)))
    removed, _ = lm_depth.choose(_states(h), "angular", 2, {2, 3})
    assert removed == [2, 3]
    from edgekit.errors import StageError

    with pytest.raises(StageError, match="no run of 2 consecutive blocks"):
        lm_depth.choose(_states(h), "angular", 2, {0, 2})


def test_greedy_scores_from_cached_block_inputs_equal_whole_forwards(monkeypatch, tmp_path):
    import torch
    import transformers

    from edgekit.quantize import lm_mixed
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path, "llama", num_hidden_layers=5)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    windows = [np.arange(32) % 50 + 3, np.arange(32)[::-1] % 50 + 3]
    order, steps = lm_depth.greedy(model, windows, 2, {0, 1, 2, 3, 4}, lambda n: None)

    class Whole(lm_mixed.Scanner):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            assert self.fast  # the tiny Llama takes the cached path; this test forces the other
            self.fast = False

    monkeypatch.setattr(lm_mixed, "Scanner", Whole)
    order_slow, steps_slow = lm_depth.greedy(model, windows, 2, {0, 1, 2, 3, 4}, lambda n: None)
    assert order == order_slow and len(model.model.layers) == 5
    for a, b in zip(steps, steps_slow):
        assert a["kl"].keys() == b["kl"].keys()
        for k in a["kl"]:
            assert a["kl"][k] == pytest.approx(b["kl"][k], rel=1e-3, abs=1e-6)


# -- through the pipeline, on tiny random models ---------------------------------------------

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("openvino_genai")

from tests.test_quantize_weight_only import ORT_INT4, OV_INT4, _lm_recipe  # noqa: E402

FP32 = [{"kind": "target.onnxruntime-genai", "name": "fp32", "precision": "fp32"},
        {"kind": "target.openvino-genai", "name": "ov_fp32", "weights": "fp32"}]


@pytest.fixture(scope="module")
def deep_llama(tmp_path_factory) -> Path:
    from tests.lm_helpers import tiny_lm_dir

    return tiny_lm_dir(tmp_path_factory.mktemp("deep"), "llama", num_hidden_layers=5)


def _run(tmp: Path, model_dir: Path, stages: list[dict]):
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    return run(load_recipe(_lm_recipe(tmp, model_dir, stages)), tmp / "out")


def _records(res) -> dict:
    return {s["kind"]: s["measured"] for s in res.manifest["stages"]}


def test_blocks_removed_export_to_both_runtimes(tmp_path, deep_llama):
    import json

    res = _run(tmp_path, deep_llama, [{"kind": "prune.depth", "unit": "block", "drop": 2, "samples": 2}, *FP32])
    rec = _records(res)["prune.depth"]
    assert rec["blocks"] == 5 and len(rec["removed"]) == 2 and rec["config"]["num_hidden_layers"] == [5, 3]
    assert len(rec["influence"]) == 5 and len(rec["angular"]) == 4
    # cosine: the two blocks of least influence
    assert rec["removed"] == sorted(sorted(range(5), key=lambda i: rec["influence"][i])[:2])
    models = res.out_dir / "models"
    assert json.loads((models / "ov_fp32" / "config.json").read_text())["num_hidden_layers"] == 3
    genai = json.loads((models / "fp32" / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["num_hidden_layers"] == 3
    metrics = res.manifest["metrics"]
    # both runtimes run the 3-block model, and its perplexity is measured against the 5-block reference
    for art, rt in (("fp32", "onnxruntime-genai"), ("ov_fp32", "openvino-genai")):
        assert metrics[art][rt]["kl_mean"] > 1e-6, metrics[art]


@pytest.mark.parametrize("score", ["angular", "greedy"])
def test_each_score_chooses_by_its_own_measure_and_the_directory_reloads(tmp_path, deep_llama, score):
    """The stage alone (the export of a pruned directory is the test above's)."""
    import dataclasses

    from edgekit.prune.depth import DepthConfig, PruneDepth
    from edgekit.recipe.sections import ModelSpec
    from edgekit.sources.causal_lm import load_causal_lm
    from edgekit.stages.state import Dataset, ModelState

    cl = load_causal_lm(ModelSpec(hf=str(deep_llama)), tmp_path, tmp_path)
    windows = [np.arange(32) % 50 + 3, np.arange(32)[::-1] % 50 + 3]
    state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"], example={},
                       workdir=tmp_path / "w", causal_lm=cl, scratch=tmp_path,
                       calibration=Dataset("calibration", [{"input_ids": w[None]} for w in windows]))
    state, out = PruneDepth().apply(state, DepthConfig(kind="prune.depth", unit="block", drop=2, score=score))
    rec = out.measured
    if score == "greedy":
        assert len(rec["greedy_steps"]) == 2 and len(rec["greedy_steps"][0]["kl"]) == 5
        first = rec["greedy_steps"][0]["kl"]
        assert str(rec["removal_order"][0]) == min(first, key=first.get)
        assert len(rec["greedy_steps"][1]["kl"]) == 4
    else:
        start = min(range(4), key=lambda i: rec["angular"][str(i)])
        assert rec["removed"] == [start, start + 1]
    assert state.lm_teacher is cl and state.causal_lm.directory != cl.directory
    assert len(dataclasses.replace(state.causal_lm).torch_model().model.layers) == 3


def test_per_layer_config_lists_are_cut_with_the_blocks(tmp_path):
    """Gemma-3 keeps a sliding / full attention type per layer: the pruned config must list the
    kept layers' types, or the reload would attend differently from the pruned model."""
    import json

    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", "gemma3_text", num_hidden_layers=6)
    types = json.loads((src / "config.json").read_text())["layer_types"]
    assert len(set(types)) == 2, types
    res = _run(tmp_path, src, [{"kind": "prune.depth", "unit": "block", "drop": 2, "score": "cosine", "samples": 2},
                               OV_INT4])
    rec = _records(res)["prune.depth"]
    assert "layer_types" in rec["config"]["per_layer_fields"]
    kept = json.loads((res.out_dir / "models" / "ov_int4" / "config.json").read_text())["layer_types"]
    assert kept == [types[i] for i in rec["config"]["kept"]]


def test_healing_distils_the_pruned_model_towards_the_unpruned_one(tmp_path, deep_llama):
    pytest.importorskip("peft")
    res = _run(tmp_path, deep_llama, [
        {"kind": "prune.depth", "unit": "block", "drop": 2, "samples": 2},
        {"kind": "finetune.lm", "steps": 12, "lr": 1e-3, "lora": {"rank": 4, "alpha": 8}},
        {**ORT_INT4, "block_size": 32}])
    rec = _records(res)["finetune.lm"]
    assert rec["steps"] == 12 and len(rec["loss_curve"]) == 12 and rec["stopped_by"] == "steps"
    assert rec["kl_after"] < rec["kl_before"], rec
    assert res.manifest["metrics"]["int4"]["onnxruntime-genai"]["value"] > 0


@pytest.mark.parametrize("stages, message", [
    ([{"kind": "prune.depth", "unit": "block", "drop": 5}, ORT_INT4],
     "drop: 5 blocks asked for; this LlamaForCausalLM has 5, of which at most 4 can go"),
    ([{"kind": "prune.depth", "unit": "block", "drop": 1, "ignore": ["model.layers.9"]}, ORT_INT4],
     "ignore: 'model.layers.9' matches no block"),
    ([{"kind": "finetune.lm", "steps": 1}, ORT_INT4], "finetune.lm distils from the unpruned model"),
    ([{"kind": "prune.depth", "unit": "block", "drop": 1, "samples": 1},
      {"kind": "finetune.lm", "steps": 1, "lora": {"modules": ["qproj"]}}, ORT_INT4],
     "lora.modules: 'qproj' is no linear layer's name in this LlamaForCausalLM"),
])
def test_bad_lm_depth_settings_are_one_line_and_write_nothing(tmp_path, deep_llama, stages, message):
    from edgekit.errors import RecipeError

    with pytest.raises(RecipeError) as exc:
        _run(tmp_path, deep_llama, stages)
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert not (tmp_path / "out" / "tiny-lm").exists()


def test_a_float_stage_after_a_target_is_refused_before_any_work(tmp_path, deep_llama):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    path = _lm_recipe(tmp_path, deep_llama, [ORT_INT4, {"kind": "prune.depth", "unit": "block", "drop": 1}])
    with pytest.raises(RecipeError, match=r"stages\[1\] \(prune.depth\): it changes the float model, so it goes "
                                          r"before stages\[0\] \(target.onnxruntime-genai\)"):
        load_recipe(path)


@pytest.mark.parametrize("family", ["qwen3", "phi3"])
def test_other_families_prune_heal_and_export(tmp_path, family):
    """Qwen3 (per-layer layer_types, q/k norms) and Phi-3 (fused qkv_proj / gate_up_proj, which
    the default LoRA modules must find by themselves)."""
    pytest.importorskip("peft")
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", family, num_hidden_layers=4)
    target = OV_INT4 if family == "qwen3" else {**ORT_INT4, "block_size": 32}  # one runtime each: both covered
    res = _run(tmp_path, src, [{"kind": "prune.depth", "unit": "block", "drop": 1, "samples": 2},
                               {"kind": "finetune.lm", "steps": 2}, target])
    rec = _records(res)
    assert rec["prune.depth"]["config"]["num_hidden_layers"] == [4, 3]
    assert rec["finetune.lm"]["trained_parameters"] > 0
    assert target["name"] in res.manifest["metrics"]
