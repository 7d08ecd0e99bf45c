"""Token reduction on a dense (per-patch) head: the merge map restores the full grid before the
head, so the output keeps one row per patch, on tiny random ViTs and on the zoo's real
`digits_vit_seg` (trained on scikit-learn digits, evaluated on per-patch labels of the test split)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekit.core.backends import is_available
from edgekit.data.digits import BACKGROUND, INK, split, token_labels
from edgekit.models.digits_nets import DigitsSegViT
from edgekit.tokens.vit import ReducedViT
from tests.conftest import RECIPES, fast_profile, write_recipe


def test_token_labels_are_the_digit_on_ink_and_background_elsewhere():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y, ids = split()["test"]
    labels = token_labels(ids)
    assert labels.shape == (len(ids), 64)
    ink = d.images[ids].reshape(len(ids), 64) >= INK
    assert np.array_equal(labels[ink], np.broadcast_to(y[:, None], labels.shape)[ink])
    assert np.all(labels[~ink] == BACKGROUND)
    # one label per 4x4 patch of the model's 32x32 input, in the patch embedding's row-major order
    patch_means = x[:, 0].reshape(len(ids), 8, 4, 8, 4).mean(axis=(2, 4)).reshape(len(ids), 64)
    assert np.array_equal(patch_means >= INK / 8 - 1 - 1e-6, ink)


@pytest.mark.parametrize("method", ["merge", "prune"])
def test_dense_vit_keeps_the_grid_and_r0_is_the_model(method):
    torch.manual_seed(0)
    model = DigitsSegViT(img=16, dim=32, depth=3, heads=2).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ReducedViT(model, [0, 0, 0], method)(x), model(x), atol=1e-6)
        reduced = ReducedViT(model, [3, 3, 2], method)
        assert reduced.encode(x).x.shape[1] == 17 - 8
        assert reduced(x).shape == model(x).shape == (2, 16, 11)


@pytest.fixture(scope="module")
def seg_model():
    from edgekit.models.zoo import digits_vit_seg

    return digits_vit_seg().module


@pytest.mark.slow
def test_merge_and_restore_keeps_per_patch_accuracy_on_real_digits(seg_model):
    from edgekit.checks.metrics import token_top1

    x, _, ids = split()["test"]
    labels = token_labels(ids)
    with torch.no_grad():
        base = seg_model(torch.from_numpy(x)).numpy()
        merged = ReducedViT(seg_model, [9, 9, 9, 9], "merge")(torch.from_numpy(x)).numpy()
    ref, got = token_top1(base, labels), token_top1(merged, labels)
    assert merged.shape == (len(ids), 64, 11)
    assert ref > 0.9  # a real model: the digit class needs the whole image, not one patch
    assert ref - got < 0.01  # 65 -> 29 tokens
    assert not np.allclose(merged, base, atol=1e-4)  # tokens really were merged


@pytest.mark.slow
def test_seg_tome_recipe_runs_and_exported_graph_matches_pytorch(seg_model, tmp_path, cli):
    import yaml

    data = fast_profile(yaml.safe_load((RECIPES / "vit_seg_tome.yaml").read_text()))
    data["targets"] = ["onnxruntime"] + (["openvino"] if is_available("openvino") else [])
    data["data"]["evaluation"]["samples"] = 256
    result = cli("compress", "-r", write_recipe(tmp_path, data), "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "digits-vit-seg-tome"
    manifest = json.loads((out / "manifest.json").read_text())
    merge, export = manifest["stages"][:2]
    assert merge["measured"]["tokens_kept_per_layer"] == [56, 47, 38, 29]
    assert export["measured"]["parity_max_rel_err"] < 1e-4
    assert manifest["metrics"]["reference"]["metric"] == "token_top1"
    for rt in data["targets"]:
        m = manifest["metrics"]["fp32"][rt]
        assert m["metric"] == "token_top1" and m["drop"] <= 0.01
    with np.load(out / "reference.npz") as ref:
        assert ref["output"].shape[1:] == (64, 11)
