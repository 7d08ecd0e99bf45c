"""quantize.weight_only with algorithm awq: INC's AWQ given edgekit's table of the layers that
absorb its scales. The table must leave the float model's function unchanged (checked here with
random scales on three families), the scales must really be applied (INC's own detection finds
none on transformers 5), and the changed norms must reach both runtimes with the integers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("neural_compressor")

from edgekit.quantize import awq  # noqa: E402


def _model(tmp_path, family, **overrides):
    from transformers import AutoModelForCausalLM

    from tests.lm_helpers import tiny_lm_dir

    d = tiny_lm_dir(tmp_path, family, **overrides)
    return d, AutoModelForCausalLM.from_pretrained(d, dtype="float32").eval()


@pytest.mark.parametrize("family, overrides", [
    ("llama", {"num_key_value_heads": 4}),  # no grouped-query attention: v_proj absorbs o_proj's scale too
    ("qwen2", {}),  # q/k/v biases, grouped-query attention
    ("qwen3", {}),  # q/k norms inside the attention
])
def test_the_absorb_table_leaves_the_float_model_unchanged(tmp_path, family, overrides):
    import torch

    _, model = _model(tmp_path, family, **overrides)
    pairs = awq.absorb_pairs(model, set())
    assert ("self_attn.v_proj" in pairs) == (family == "llama")
    ids = torch.arange(3, 40).reshape(1, -1)
    with torch.no_grad():
        before = model(ids).logits
        rng = np.random.default_rng(0)
        for i in range(model.config.num_hidden_layers):
            for absorbing, absorbed in pairs.items():
                src = model.get_submodule(f"model.layers.{i}.{absorbing}")
                s = torch.from_numpy(rng.uniform(0.25, 4.0, src.weight.shape[0]).astype(np.float32))
                src.weight.div_(s if src.weight.dim() == 1 else s.view(-1, 1))
                if getattr(src, "bias", None) is not None:
                    src.bias.div_(s)
                for name in absorbed:
                    model.get_submodule(f"model.layers.{i}.{name}").weight.mul_(s.view(1, -1))
        after = model(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_a_pair_with_a_float_layer_is_left_out(tmp_path):
    _, model = _model(tmp_path, "llama")
    pairs = awq.absorb_pairs(model, {"model.layers.1.mlp.down_proj"})
    assert "mlp.up_proj" not in pairs and "input_layernorm" in pairs


def test_families_without_the_llama_layout_are_refused_in_one_line(tmp_path):
    from edgekit.errors import StageError

    _, model = _model(tmp_path, "gemma3_text")
    with pytest.raises(StageError) as exc:
        awq.absorb_pairs(model, set())
    assert str(exc.value) == (
        "quantize.weight_only: algorithm awq: the gemma3_text family is not supported: AWQ needs the Llama block "
        "layout (a plain RMSNorm before separate q/k/v and gate/up projections); supported: llama, mistral, qwen2, "
        "qwen3; use algorithm gptq or autoround")


@pytest.mark.slow
def test_awq_scales_and_integers_reach_both_runtimes(tmp_path, tiny_llama_dir):
    """Through the pipeline: every block's norms changed (scales applied), the ONNX graph
    carries the changed norms, and both runtimes read back INC's integers."""
    import onnx
    from onnx import numpy_helper

    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("openvino_genai")
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.test_quantize_weight_only import ORT_INT4, OV_INT4, _lm_recipe

    stage = {"kind": "quantize.weight_only", "algorithm": "awq", "bits": 4, "group_size": 32}
    done = run(load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, [stage, ORT_INT4, OV_INT4])), tmp_path / "out")
    rec = {s["kind"]: s["measured"] for s in done.manifest["stages"]}
    wo = rec["quantize.weight_only"]
    assert wo["tool"].endswith(" awq") and wo["awq"]["norms_changed"] == 4
    assert set(wo["awq"]["absorbed"]) == {"input_layernorm", "post_attention_layernorm", "mlp.up_proj"}
    assert rec["target.openvino-genai"]["integers_read_back_equal"] == 14
    assert rec["target.onnxruntime-genai"]["integers_read_back_equal"] == 14
    graph = onnx.load(str(done.out_dir / "models" / "int4" / "model.onnx")).graph
    norms = {t.name: numpy_helper.to_array(t) for t in graph.initializer
             if "input_layernorm" in t.name or "post_attention_layernorm" in t.name}
    assert len(norms) == 4 and all(not np.allclose(v, 1.0) for v in norms.values())  # the source's are all 1
    assert set(done.manifest["metrics"]) >= {"int4", "ov_int4"}


def test_awq_on_a_family_it_cannot_scale_writes_nothing(tmp_path):
    from edgekit.errors import StageError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.lm_helpers import tiny_lm_dir
    from tests.test_quantize_weight_only import ORT_INT4, _lm_recipe

    model_dir = tiny_lm_dir(tmp_path / "m", "gemma3_text")
    stage = {"kind": "quantize.weight_only", "algorithm": "awq", "bits": 4, "group_size": 32}
    with pytest.raises(StageError, match="algorithm awq: the gemma3_text family is not supported"):
        run(load_recipe(_lm_recipe(tmp_path, model_dir, [stage, ORT_INT4])), tmp_path / "out")
    assert not any((tmp_path / "out").glob("*/manifest.json"))
