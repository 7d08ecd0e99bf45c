"""Stages tokens.merge / tokens.prune: recipe errors, the stage record, finetuning, and one
end-to-end run through the CLI on a tiny untrained ViT (export, ONNX Runtime, OpenVINO)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml

from edgekit.core.backends import is_available
from edgekit.errors import RecipeError
from edgekit.recipe import load_recipe, parse_recipe
from tests.conftest import RECIPES, fast_profile, write_recipe

BASE = {
    "edgekit": 1,
    "name": "tiny-vit-tokens",
    "model": {"python": "tests.test_tokens_stage:tiny_vit"},
    "data": {"calibration": {"builtin": "digits", "split": "train", "samples": 16},
             "evaluation": {"builtin": "digits", "split": "test", "samples": 16}},
    "stages": [{"kind": "tokens.merge", "r": 4}, {"kind": "export.onnx"}],
    "targets": ["onnxruntime"],
    "verify": {"cosine_min": 0.5},
}


def tiny_vit():
    from edgekit.models.bundle import ModelBundle
    from edgekit.models.digits_nets import DigitsViT

    torch.manual_seed(0)
    return ModelBundle(DigitsViT(dim=32, depth=2, heads=2).eval(), {"x": np.zeros((1, 1, 32, 32), np.float32)},
                       ["logits"], "classification")


def _with_stage(**stage) -> dict:
    data = copy.deepcopy(BASE)
    data["stages"][0] = stage
    return data


@pytest.mark.parametrize("stage,message", [
    ({"kind": "tokens.merge", "r": -2}, "stages[0]: r must be >= 0 tokens per layer, got -2"),
    ({"kind": "tokens.merge", "r": 4, "schedul": "decreasing"},
     "stages[0]: unknown key 'schedul' (did you mean 'schedule'?)"),
    ({"kind": "tokens.merge", "r": 4, "schedule": "linear"},
     "stages[0].schedule: got 'linear'; allowed: 'constant' or 'decreasing'"),
    ({"kind": "tokens.prune", "r": [4, 4], "layers": [0]},
     "stages[0]: give r as a list on its own (one value per block), or an int with schedule/layers"),
    ({"kind": "tokens.merge", "r": 4, "finetune": {"epochs": 0}},
     "stages[0].finetune.epochs: Input should be greater than or equal to 1"),
])
def test_bad_token_stage_is_one_line_error(stage, message):
    with pytest.raises(RecipeError) as exc:
        parse_recipe(_with_stage(**stage), "r.yaml")
    assert str(exc.value).startswith(f"r.yaml: {message}")


def _state(tmp_path):
    from edgekit.stages.state import Dataset, ModelState

    bundle = tiny_vit()
    rng = np.random.default_rng(0)
    calib = [{"x": rng.standard_normal((1, 1, 32, 32)).astype(np.float32)} for _ in range(8)]
    return ModelState(torch_model=bundle.module, input_names=["x"], output_names=["logits"],
                      example=bundle.example, workdir=tmp_path, calibration=Dataset("rand", calib))


def _apply(tmp_path, **stage):
    from edgekit.stages.registry import REGISTRY

    info = REGISTRY[stage["kind"]]
    cfg = info.load().Config(**stage)
    state = _state(tmp_path)
    original = state.torch_model
    state, record = info.load()().run(state, cfg)
    return original, state, record


def test_merge_record_lists_tokens_and_flops(tmp_path):
    _, state, record = _apply(tmp_path, kind="tokens.merge", r=8, schedule="decreasing")
    m = record.measured
    assert m["tokens_in"] == 65 and m["removed_per_layer"] == [11, 5]
    assert m["tokens_kept_per_layer"] == [54, 49]
    assert [row["tokens_in"] for row in m["layers"]] == [65, 54]
    assert all(row["flops_after"] < row["flops_before"] for row in m["layers"])
    assert m["block_flops_ratio"] > 1
    assert state.torch_model.encode(torch.zeros(1, 1, 32, 32)).x.shape[1] == 49


def test_prune_only_at_given_layers(tmp_path):
    _, _, record = _apply(tmp_path, kind="tokens.prune", r=20, layers=[1])
    assert record.measured["removed_per_layer"] == [0, 20]
    assert record.measured["tokens_kept_per_layer"] == [65, 45]


def test_impossible_schedule_names_block_and_limit(tmp_path):
    with pytest.raises(RecipeError, match=r"^r: removing 40 tokens at block 0 is impossible with 65 tokens there; "
                                          r"at most 32 \(merge\)$"):
        _apply(tmp_path, kind="tokens.merge", r=40)
    with pytest.raises(RecipeError, match=r"^r: 3 values given, the model has 2 blocks"):
        _apply(tmp_path, kind="tokens.merge", r=[1, 2, 3])
    with pytest.raises(RecipeError, match=r"^layers: \[5\] names a block past the last; the model has blocks 0..1$"):
        _apply(tmp_path, kind="tokens.prune", r=2, layers=[5])


def test_finetune_distils_a_copy_and_leaves_the_reference_alone(tmp_path):
    original, state, record = _apply(tmp_path, kind="tokens.merge", r=12, finetune={"epochs": 2, "lr": 1e-3})
    before = copy.deepcopy(original.state_dict())
    assert len(record.measured["finetune_loss_per_epoch"]) == 2
    assert state.torch_model.model is not original
    changed = any(not torch.equal(v, state.torch_model.model.state_dict()[k]) for k, v in before.items())
    assert changed
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items())


@pytest.mark.slow
def test_end_to_end_merge_then_export_verifies_on_runtimes(tmp_path, cli):
    data = fast_profile(copy.deepcopy(BASE))
    targets = ["onnxruntime"] + (["openvino"] if is_available("openvino") else [])
    data["targets"] = targets
    path = write_recipe(tmp_path, data)
    result = cli("compress", "-r", path, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "tiny-vit-tokens" / "manifest.json").read_text())
    merge, export = manifest["stages"][:2]
    assert merge["measured"]["tokens_kept_per_layer"] == [61, 57]
    assert export["measured"]["parity_max_rel_err"] < 1e-4
    for rt in targets:
        assert manifest["metrics"]["fp32"][rt]["parity"]["cosine_mean"] > 0.5


@pytest.mark.parametrize("name", ["vit_tome.yaml", "vit_tome_int8.yaml", "minilm_tokens.yaml"])
def test_token_recipes_validate(name):
    recipe = load_recipe(RECIPES / name).recipe
    assert recipe.stages[0].kind == "tokens.merge"
    assert yaml.safe_load((RECIPES / name).read_text())["stages"][1]["kind"] == "export.onnx"
