"""The token-reduction adapters on tiny real models: edgekit's ViT, Hugging Face ViT and BERT.

r = 0 must reproduce the unreduced model; reductions must export to ONNX with static shapes and
match PyTorch on ONNX Runtime; BERT merging that only consumes padding must be lossless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.models.digits_nets import DigitsViT
from edgekit.tokens.vit import ReducedViT


def tiny_vit() -> DigitsViT:
    torch.manual_seed(0)
    return DigitsViT(img=16, patch=4, dim=32, depth=3, heads=2).eval()


def _ort_matches(model: torch.nn.Module, feeds: dict[str, np.ndarray], tmp_path) -> float:
    ort = pytest.importorskip("onnxruntime")
    model.eval()
    path = tmp_path / "m.onnx"
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    torch.onnx.export(model, args, str(path), opset_version=17, dynamo=False, input_names=list(feeds))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        ref = model(*args).numpy()
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("method", ["merge", "prune"])
def test_vit_r0_equals_model_and_reduction_exports(method, tmp_path):
    model = tiny_vit()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ReducedViT(model, [0, 0, 0], method)(x), model(x), atol=1e-6)
    reduced = ReducedViT(model, [3, 2, 2], method)
    t = reduced.encode(x)
    assert t.x.shape[1] == 17 - 7
    assert _ort_matches(reduced, {"x": x[:1].numpy()}, tmp_path) < 1e-4


def test_dense_head_restores_every_token(tmp_path):
    model = tiny_vit()
    head = torch.nn.Linear(32, 3)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        full = ReducedViT(model, [0, 0, 0], dense_head=head)(x)
        reduced = ReducedViT(model, [4, 3, 2], dense_head=head)
        out = reduced(x)
        plain = head(model.norm(_plain_tokens(model, x)))
    assert out.shape == full.shape == (1, 17, 3)
    assert torch.allclose(full, plain, atol=1e-5)
    assert _ort_matches(reduced, {"x": x.numpy()}, tmp_path) < 1e-4


def _plain_tokens(model: DigitsViT, x: torch.Tensor) -> torch.Tensor:
    t = model.tokens(x)
    for blk in model.blocks:
        t = blk(t)
    return t


def test_hf_vit_adapter_r0_equals_hf_and_merge_exports(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, num_labels=5)
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(cfg).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        assert torch.allclose(ReducedViT(hf, [0, 0])(x), ref, atol=1e-5)
    reduced = ReducedViT(hf, [4, 3])
    assert reduced.family == "hf-vit"
    assert _ort_matches(reduced, {"pixel_values": x.numpy()}, tmp_path) < 1e-4


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    from edgekit.sources.hf import _mean_pool_module

    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    return _mean_pool_module(transformers.BertModel(cfg).eval())


def _text_feeds(length: int, real: int) -> dict[str, np.ndarray]:
    ids = np.zeros((1, length), np.int64)
    ids[0, :real] = np.arange(1, real + 1) % 50
    mask = np.zeros((1, length), np.int64)
    mask[0, :real] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_bert_merging_only_padding_is_lossless():
    from edgekit.tokens.bert import ReducedBert

    model = _tiny_bert()
    feeds = {k: torch.from_numpy(v) for k, v in _text_feeds(16, 6).items()}
    with torch.no_grad():
        ref = model(**feeds)
        assert torch.allclose(ReducedBert(model, [0, 0])(**feeds), ref, atol=1e-5)
        # 10 padding tokens: removing 5 + 4 consumes only padding, so nothing changes
        assert torch.allclose(ReducedBert(model, [5, 4])(**feeds), ref, atol=1e-5)
        assert torch.allclose(ReducedBert(model, [5, 4], "prune")(**feeds), ref, atol=1e-5)
        # past the padding, real tokens merge: close, no longer equal
        merged = ReducedBert(model, [7, 4])(**feeds)
    assert not torch.allclose(merged, ref, atol=1e-5)
    assert torch.nn.functional.cosine_similarity(merged, ref).item() > 0.9


def test_bert_reduction_exports(tmp_path):
    from edgekit.tokens.bert import ReducedBert

    reduced = ReducedBert(_tiny_bert(), [5, 3])
    assert _ort_matches(reduced, _text_feeds(16, 12), tmp_path) < 1e-4


def test_bucketing_picks_the_shortest_bucket_and_refuses_overflow():
    from edgekit.errors import StageError
    from edgekit.tokens.bert import bucket_for, to_bucket

    assert bucket_for(np.array([3, 32, 33, 128]), [32, 64, 128]).tolist() == [32, 32, 64, 128]
    with pytest.raises(StageError, match="exceeds the largest bucket 64"):
        bucket_for(np.array([65]), [32, 64])
    feeds = _text_feeds(16, 6)
    assert to_bucket(feeds, 8)["input_ids"].shape == (1, 8)
    with pytest.raises(StageError, match="would drop real tokens"):
        to_bucket(feeds, 4)
