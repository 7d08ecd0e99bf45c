"""prune.depth `unit: sublayer` on causal LMs: attention-only and MLP-only decoder layers written
as a plain directory (zeroed output projections + the config's list), silenced in PyTorch, and
exported by both generation targets without them, KV cache included — checked against the
pruned PyTorch model itself, with layer 0's attention among those removed (the layer
transformers reads the cache length from)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.integers(1, 11))
def test_the_least_turning_sublayers_go_and_one_attention_stays(layers, seed, drop):
    from edgekit.prune.lm_sublayers import by_influence

    rng = np.random.default_rng(seed)
    scores = {(i, p): float(rng.random()) for i in range(layers) for p in ("attention", "mlp")}
    drop = min(drop, 2 * layers - 1)
    chosen = by_influence(scores, drop, layers)
    attention = [u for u in chosen if u[1] == "attention"]
    assert len(attention) < layers and len(set(chosen)) == len(chosen) == drop
    # nothing left out scores lower than something taken, but an attention the rule had to keep
    skipped = [u for u in scores if u not in chosen and scores[u] < max(scores[c] for c in chosen)]
    assert all(u[1] == "attention" and len(attention) == layers - 1 for u in skipped)


pytest.importorskip("onnxruntime_genai")
pytest.importorskip("openvino_genai")

from tests.test_quantize_weight_only import ORT_INT4, _lm_recipe  # noqa: E402

FP32 = [{"kind": "target.onnxruntime-genai", "name": "fp32", "precision": "fp32"},
        {"kind": "target.openvino-genai", "name": "ov_fp32", "weights": "fp32",
         "inference_precision": "f32", "kv_cache_precision": "f32"}]  # computes what torch computes


def _run(tmp: Path, model_dir: Path, stages: list[dict]):
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    return run(load_recipe(_lm_recipe(tmp, model_dir, stages)), tmp / "out")


def _pruned_dir(tmp: Path, family: str, sublayers: dict[str, list[int]], layers: int = 4) -> Path:
    from edgekit.prune import lm_depth
    from edgekit.sources.causal_lm import CausalLM, load_causal_lm
    from edgekit.recipe.sections import ModelSpec
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp / "src", family, num_hidden_layers=layers)
    lm: CausalLM = load_causal_lm(ModelSpec(hf=str(src)), tmp, tmp)
    out = tmp / "pruned"
    lm_depth.write_pruned(lm, [], out, sublayers=sublayers)
    return out


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_sublayers_removed_run_on_both_runtimes_as_in_pytorch(tmp_path, family):
    import onnx
    import openvino as ov
    import torch
    import transformers

    from edgekit.sources.causal_lm import load_causal_lm
    from edgekit.recipe.sections import ModelSpec

    pruned = _pruned_dir(tmp_path, family, {"attention": [0, 2], "mlp": [1]})
    config = json.loads((pruned / "config.json").read_text())
    assert config["edgekit_removed_sublayers"] == {"attention": [0, 2], "mlp": [1]}
    # any reader of the directory computes the pruned model (zeroed projections); edgekit's
    # silenced modules compute the same without running them
    probe = torch.arange(1, 20).reshape(1, -1)
    plain = transformers.AutoModelForCausalLM.from_pretrained(str(pruned), dtype=torch.float32).eval()
    silenced = load_causal_lm(ModelSpec(hf=str(pruned)), tmp_path, tmp_path).torch_model()
    assert "forward" in vars(silenced.model.layers[0].self_attn) and "forward" not in vars(plain.model.layers[0].self_attn)
    with torch.no_grad():
        torch.testing.assert_close(silenced(probe).logits, plain(probe).logits, atol=1e-5, rtol=1e-5)
        # generation with a KV cache whose layer 0 has no attention: positions must still advance
        a = plain.generate(probe, max_new_tokens=6, do_sample=False)
        b = silenced.generate(probe, max_new_tokens=6, do_sample=False)
    assert a.tolist() == b.tolist()

    # the pruned directory as a recipe's model: both runtimes must match it, token by token
    (tmp_path / "r").mkdir()
    res = _run(tmp_path / "r", pruned, FP32)
    metrics = res.manifest["metrics"]
    for art, rt in (("fp32", "onnxruntime-genai"), ("ov_fp32", "openvino-genai")):
        m = metrics[art][rt]
        assert m["kl_mean"] < 1e-4 and m["top1_agreement"] == 1.0, (art, m)
        assert m["continuations"]["identical"] == m["continuations"]["prompts"], (art, m["continuations"])
    models = res.out_dir / "models"
    graph = onnx.load(str(models / "fp32" / "model.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("GroupQueryAttention") == 2 and ops.count("MatMul") == 2 * 2 + 3 * 3 + 1  # qkv+o, 3 MLPs, head
    assert sorted(i.name for i in graph.input if i.name.startswith("past")) == [
        f"past_key_values.{i}.{kv}" for i in range(2) for kv in ("key", "value")]
    genai = json.loads((models / "fp32" / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["num_hidden_layers"] == 2
    ir = ov.Core().read_model(str(models / "ov_fp32" / "openvino_model.xml"))
    assert sum(op.get_type_name() == "ReadValue" for op in ir.get_ops()) == 4  # 2 layers' keys and values


def test_attention_sublayers_chosen_healed_and_quantized(tmp_path):
    """greedy on attention sublayers through the stage, healed (LoRA must not grow a removed
    attention back) and quantized (the removed layers' weights stay float, then are dropped)."""
    pytest.importorskip("peft")
    pytest.importorskip("neural_compressor")
    import torch

    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", "llama", num_hidden_layers=4)
    wo = {"kind": "quantize.weight_only", "algorithm": "rtn", "bits": 4, "group_size": 32}
    res = _run(tmp_path, src, [{"kind": "prune.depth", "unit": "sublayer", "parts": ["attention"], "drop": 2,
                                "samples": 2, "score": "greedy"},
                               {"kind": "finetune.lm", "steps": 3}, wo, {**ORT_INT4, "block_size": 32}])
    rec = {s["kind"]: s["measured"] for s in res.manifest["stages"]}
    depth = rec["prune.depth"]
    assert depth["unit"] == "sublayer" and len(depth["removed"]) == 2
    assert all(r.endswith(":attention") for r in depth["removed"])
    steps = depth["greedy_steps"]
    assert len(steps[0]["kl"]) == 4 and len(steps[1]["kl"]) == 3
    first = min(steps[0]["kl"], key=steps[0]["kl"].get)
    assert depth["removal_order"][0] == first  # the least KL goes first
    gone = sorted(int(r.split(".")[2].split(":")[0]) for r in depth["removed"])
    assert depth["config"]["edgekit_removed_sublayers"] == {"attention": gone}
    assert rec["finetune.lm"]["trained_parameters"] > 0
    genai = rec["target.onnxruntime-genai"]
    assert genai["kv_cache_layers"] == 2 and genai["op_counts"]["GroupQueryAttention"] == 2
    assert "int4" in res.manifest["metrics"]


def test_healing_leaves_a_removed_attention_at_zero(tmp_path):
    """LoRA adapters on a silenced attention get no gradient: merged, its o_proj is still zero."""
    pytest.importorskip("peft")
    import torch

    from edgekit.finetune.lm import FinetuneLM, FinetuneLMConfig
    from edgekit.sources.causal_lm import load_causal_lm
    from edgekit.recipe.sections import ModelSpec
    from edgekit.stages.state import Dataset, ModelState
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", "llama", num_hidden_layers=3)
    teacher = load_causal_lm(ModelSpec(hf=str(src)), tmp_path, tmp_path)
    pruned = _pruned_dir(tmp_path / "p", "llama", {"attention": [1]}, layers=3)
    lm = dataclasses.replace(teacher, directory=pruned)
    rng = np.random.default_rng(0)
    calib = Dataset("calibration", [{"input_ids": rng.integers(1, 100, size=(1, 24))} for _ in range(2)])
    (tmp_path / "s").mkdir()
    state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"], example={},
                       workdir=tmp_path / "w", causal_lm=lm, scratch=tmp_path / "s", calibration=calib,
                       lm_teacher=teacher)
    state, _ = FinetuneLM().apply(state, FinetuneLMConfig(kind="finetune.lm", steps=3))
    healed = dataclasses.replace(state.causal_lm).torch_model()
    assert float(healed.model.layers[1].self_attn.o_proj.weight.abs().max()) == 0.0
    assert float(healed.model.layers[0].self_attn.o_proj.weight.abs().max()) > 0.0


@pytest.mark.parametrize("stage, message", [
    ({"kind": "prune.depth", "unit": "sublayer", "parts": ["attention"], "drop": 4},
     "drop: 4 sublayers asked for; this LlamaForCausalLM has 4 decoder layers, of which at most 3 attention "
     "sublayers can go (one attention stays: it holds the KV cache)"),
    ({"kind": "prune.depth", "unit": "sublayer", "drop": 1, "score": "angular"},
     "score: angular ranks runs of whole blocks; sublayers are scored by cosine or greedy"),
])
def test_bad_sublayer_settings_are_one_line_and_write_nothing(tmp_path, stage, message):
    from edgekit.errors import RecipeError
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", "llama", num_hidden_layers=4)
    with pytest.raises(RecipeError) as exc:
        _run(tmp_path, src, [stage, ORT_INT4])
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert not (tmp_path / "out" / "tiny-lm").exists()


def test_a_removed_sublayer_past_the_last_layer_is_one_line(tmp_path):
    from edgekit.errors import ModelLoadError
    from edgekit.recipe.sections import ModelSpec
    from edgekit.sources.causal_lm import load_causal_lm
    from tests.lm_helpers import tiny_lm_dir

    src = tiny_lm_dir(tmp_path / "src", "llama", num_hidden_layers=2)
    config = json.loads((src / "config.json").read_text())
    config["edgekit_removed_sublayers"] = {"attention": [5]}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=rf"^{re.escape(str(src))}/config.json: edgekit_removed_sublayers.attention: layer 5 is not one "
                                             r"of the model's 2 decoder layers \(0 to 1\)$"):
        load_causal_lm(ModelSpec(hf=str(src)), tmp_path, tmp_path).torch_model()
