"""prune.structured and replay: channels, heads and FFN neurons removed on tiny real models
(CNN, edgekit ViT, a residual/concat/depthwise CNN, Hugging Face BERT and ViT built from
configs), the JSON history replayed on fresh copies, recipe errors, and one CLI run."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.errors import RecipeError
from edgekit.recipe import parse_recipe

tp = pytest.importorskip("torch_pruning")

from edgekit.prune import common, replay  # noqa: E402
from edgekit.prune.structured import StructuredConfig, find_attention, prune_structured  # noqa: E402


class Branchy(nn.Module):
    """Residual add, a concatenation and a depthwise conv: what dependency handling is for."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.b = nn.Conv2d(16, 8, 1)
        self.c = nn.Conv2d(16, 8, 1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.dw(torch.relu(self.a(h)))  # residual through a depthwise conv
        h = torch.cat([self.b(h), self.c(h)], 1)  # concatenation
        return self.fc(self.bn(h).mean((2, 3)))


def _tiny(which: str):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    img = {"x": rng.standard_normal((1, 1, 32, 32)).astype(np.float32)}
    if which == "cnn":
        from edgekit.models.digits_nets import DigitsCNN

        return DigitsCNN(width=16).eval(), img
    if which == "vit":
        from edgekit.models.digits_nets import DigitsViT

        return DigitsViT(dim=32, depth=2, heads=4).eval(), img
    if which == "branchy":
        return Branchy().eval(), {"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    transformers = pytest.importorskip("transformers")
    from edgekit.sources.hf import _logits_module, _mean_pool_module

    if which == "bert":
        cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=32)
        return _mean_pool_module(transformers.BertModel(cfg).eval()), {
            "input_ids": rng.integers(0, 99, (1, 12)), "attention_mask": np.ones((1, 12), np.int64)}
    vision = {"hfvit": (transformers.ViTConfig, transformers.ViTForImageClassification),
              "deit": (transformers.DeiTConfig, transformers.DeiTForImageClassification)}
    config, cls = vision[which]
    cfg = config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 image_size=16, patch_size=8, num_labels=7)
    return _logits_module(cls(cfg).eval(), ["pixel_values"]), {
        "pixel_values": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}


def _cfg(**kw) -> StructuredConfig:
    return StructuredConfig(kind="prune.structured", **{"ratio": 0.5, **kw})


def _run(model, example):
    with torch.no_grad():
        return model(*common.torch_inputs(example))


@pytest.mark.parametrize("which", ["cnn", "vit", "branchy", "bert", "hfvit", "deit"])
def test_structured_shrinks_and_replays_exactly(which):
    model, example = _tiny(which)
    fresh = copy.deepcopy(model)
    out_before = _run(model, example)
    params_before = sum(p.numel() for p in model.parameters())
    history, details = prune_structured(model, _cfg(), example)
    out_after = _run(model, example)
    assert out_after.shape == out_before.shape
    assert sum(p.numel() for p in model.parameters()) < 0.8 * params_before
    # plain JSON: survives a dump/load unchanged, kept and pruned partition each width
    history = json.loads(json.dumps(history))
    for op in history["ops"]:
        assert sorted(op["kept"] + op["pruned"]) == list(range(op["width_before"]))
        assert op["kept"] and op["pruned"]
    replay(history, fresh)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(_run(fresh, example), out_after)


@pytest.mark.parametrize("which", ["vit", "bert", "hfvit", "deit"])
def test_heads_are_removed_whole_and_attributes_patched(which):
    model, example = _tiny(which)
    _, details = prune_structured(model, _cfg(ratio=0.5, head_ratio=0.5), example)
    attns = find_attention(model)
    assert attns and all(a.heads_now() == 2 for a in attns)
    assert {d["after"] for d in details["heads"].values()} == {2}
    for a in attns:
        heads = a.module.heads if a.fused else a.module.num_attention_heads
        assert heads == 2
        if hasattr(a.module, "all_head_size"):
            assert a.module.all_head_size == a.projections[0].out_features
    # the residual width stays: the layer norms keep their size
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.normalized_shape[0] == 32 for m in norms)


def test_ffn_and_output_layers():
    model, example = _tiny("vit")
    prune_structured(model, _cfg(ratio=0.25, head_ratio=0.0), example)
    assert [b.mlp[0].out_features for b in model.blocks] == [48, 48]  # 64 -> 48
    assert all(b.attn.heads == 4 for b in model.blocks)
    assert model.head.out_features == 10 and model.head.in_features == 32


def test_round_to_and_global_scope():
    model, example = _tiny("cnn")
    history, _ = prune_structured(model, _cfg(ratio=0.4, scope="global", round_to=8), example)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert sum(c.out_channels for c in convs) < 16 + 32 + 64


def test_ignore_by_name_and_regex():
    model, example = _tiny("cnn")
    _, details = prune_structured(model, _cfg(ignore=["features.0", "re:features\\.[48]"]), example)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [16, 32, 64]
    assert details["user_ignored"] == ["features.0", "features.4", "features.8"]


def test_ignore_pattern_matching_nothing_is_an_error():
    model, example = _tiny("cnn")
    with pytest.raises(RecipeError, match=r"ignore: 'featurs.0' matches no Conv/Linear layer"):
        prune_structured(model, _cfg(ignore=["featurs.0"]), example)


@pytest.mark.parametrize("importance", ["l1", "taylor", "hessian"])
def test_data_driven_importance_picks_other_channels(tmp_path, importance):
    from edgekit.data.digits import split
    from edgekit.stages.state import Dataset, ModelState

    x, y, _ = split()["train"]
    model, example = _tiny("cnn")
    calib = Dataset("digits", [{"x": x[i : i + 1]} for i in range(16)], y[:16])
    state = ModelState(model, ["x"], ["logits"], example, tmp_path, calibration=calib)
    ref = copy.deepcopy(model)
    h_imp, details = prune_structured(model, _cfg(importance=importance, samples=16, batch=8), example, state)
    h_l2, _ = prune_structured(ref, _cfg(importance="l2"), example)
    assert [op["layer"] for op in h_imp["ops"]] == [op["layer"] for op in h_l2["ops"]]
    if importance != "l1":
        assert details["gradient_samples"] == 16
        assert any(a["pruned"] != b["pruned"] for a, b in zip(h_imp["ops"], h_l2["ops"]))


def test_replay_refuses_a_different_model():
    from edgekit.errors import StageError

    model, example = _tiny("cnn")
    history, _ = prune_structured(model, _cfg(), example)
    from edgekit.models.digits_nets import DigitsCNN

    with pytest.raises(StageError, match=r"replay: features.8 has width 128 \(out\), the history expects 64"):
        replay(history, DigitsCNN(width=32).eval())


@pytest.mark.parametrize("stage,message", [
    ({"kind": "prune.structured", "ratio": 1.5}, "stages[0].ratio: Input should be less than 1"),
    ({"kind": "prune.structured", "ratio": 0.5, "importance": "l3"},
     "stages[0].importance: got 'l3'; allowed: 'l1', 'l2', 'taylor' or 'hessian'"),
    ({"kind": "prune.structured", "ratio": 0.5, "round": 8}, "stages[0]: unknown key 'round' (did you mean 'round_to'?)"),
    ({"kind": "prune.magnitude", "sparsity": 0.5, "finetune": {"epochs": 0}},
     "stages[0].finetune.epochs: Input should be greater than or equal to 1"),
    ({"kind": "prune.nm", "n": 4, "m": 4}, "stages[0]: n must be below m (n of every m weights kept), got n=4, m=4"),
    ({"kind": "prune.depth", "drop": 1, "parts": ["ffn"]}, "stages[0].parts[0]: got 'ffn'; allowed: 'attention' or 'mlp'"),
    ({"kind": "finetune", "epochs": 2, "data": "imagenet"},
     "stages[0].data: got 'imagenet'; allowed: 'digits', 'calibration' or an entrypoint 'pkg.mod:fn'"),
])
def test_bad_prune_stage_is_one_line_error(stage, message):
    data = {"edgekit": 1, "name": "p", "model": {"python": "edgekit.models.zoo:digits_cnn"},
            "stages": [stage, {"kind": "export.onnx"}]}
    with pytest.raises(RecipeError) as exc:
        parse_recipe(data, "r.yaml")
    assert str(exc.value).startswith(f"r.yaml: {message}")


def tiny_cnn():
    from edgekit.models.bundle import ModelBundle
    from edgekit.models.digits_nets import DigitsCNN

    torch.manual_seed(0)
    return ModelBundle(DigitsCNN(width=8).eval(), {"x": np.zeros((1, 1, 32, 32), np.float32)}, ["logits"],
                       "classification")


def test_prune_finetune_export_through_cli(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.conftest import fast_profile, write_recipe

    data = fast_profile({
        "edgekit": 1, "name": "tiny-prune", "model": {"python": "tests.test_prune_structured:tiny_cnn"},
        "data": {"calibration": {"builtin": "digits", "samples": 32},
                 "evaluation": {"builtin": "digits", "split": "test", "samples": 32}},
        "stages": [{"kind": "prune.structured", "ratio": 0.5},
                   {"kind": "finetune", "epochs": 1, "data": "calibration", "batch": 16,
                    "distill": {"weight": 1.0}},
                   {"kind": "export.onnx"}],
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.05},
    })
    result = cli("compress", "-q", "-r", write_recipe(tmp_path, data), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "tiny-prune" / "manifest.json").read_text())
    prune, ft, export = manifest["stages"]
    assert prune["measured"]["after"]["params"] < 0.5 * prune["measured"]["before"]["params"]
    assert prune["measured"]["layers"]["features.0"]["after"]["out"] == 4
    assert prune["measured"]["history"]["ops"]
    assert len(ft["measured"]["loss_per_epoch"]) == 1
    assert export["measured"]["parity_max_rel_err"] <= 1e-4
    # the reference stayed the unpruned model: the pruned artifact is not identical to it
    assert manifest["metrics"]["fp32"]["onnxruntime"]["parity"]["cosine_mean"] < 0.99999
    report = (tmp_path / "out" / "tiny-prune" / "report.md").read_text()
    assert "## Pruning (`prune.structured`)" in report
    assert "| `features.0` | 1 → 1 | 8 → 4 |" in report
    html = (tmp_path / "out" / "tiny-prune" / "report.html").read_text()
    section = html.split('<section id="pruning">', 1)[1].split("</section>", 1)[0]
    assert "prune.structured" in section and "features.0" in section and "8 → 4" in section


@pytest.mark.parametrize("arch", ["bert", "vit"])
def test_structured_cut_of_hf_directory_through_cli(cli, tmp_path, arch):
    """`model: {hf: DIR}` built offline from a config: heads and FFN cut, exported, verified."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    from tests.conftest import fast_profile, write_recipe

    torch.manual_seed(0)
    if arch == "bert":
        cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=128)
        model = transformers.BertModel(cfg)
    else:
        cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, image_size=32, patch_size=8, num_labels=5)
        model = transformers.ViTForImageClassification(cfg)
    model.eval().save_pretrained(tmp_path / "hf")
    data = fast_profile({
        "edgekit": 1, "name": f"hf-{arch}-prune", "model": {"hf": str(tmp_path / "hf")},
        "stages": [{"kind": "prune.structured", "ratio": 0.5}, {"kind": "export.onnx"}],
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.05, "samples": 1},
    })
    result = cli("compress", "-q", "-r", write_recipe(tmp_path, data), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / f"hf-{arch}-prune" / "manifest.json").read_text())
    prune, export = manifest["stages"]
    assert {v["after"] for v in prune["measured"]["heads"].values()} == {2}
    assert prune["measured"]["after"]["macs"] < 0.7 * prune["measured"]["before"]["macs"]
    assert export["measured"]["parity_max_rel_err"] <= 1e-4


def test_resnet18_shape_global_cut_keeps_residuals_aligned():
    from edgekit.models.resnet import resnet18_shape

    model = resnet18_shape()
    fresh = copy.deepcopy(model)
    example = {"x": np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)}
    before = common.snapshot(model, example)
    history, _ = prune_structured(model, _cfg(ratio=0.5, scope="global", round_to=8), example)
    summ = common.summary(None, model, example, before)
    assert summ["ratio_after_over_before"]["params"] < 0.4
    for stage in model.layers:  # the two blocks of a stage share the residual width
        a, b = stage[0], stage[1]
        assert a.conv2.out_channels == b.conv2.out_channels == b.conv1.in_channels
        assert a.conv2.out_channels % 8 == 0
    assert model.fc.out_features == 1000
    replay(history, fresh)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(_run(fresh, example), _run(model, example))
