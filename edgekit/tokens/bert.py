"""Adapter: mask-aware token reduction for BERT-family encoders (MiniLM), by duck typing, and
length bucketing for static-shape targets.

Recognised layouts
- a BERT-like model: `embeddings(input_ids=...)`, `encoder.layer[i].{attention.{self.{query,
  key, value, num_attention_heads}, output.{dense, LayerNorm}}, intermediate, output.{dense,
  LayerNorm}}` (post-norm blocks): returns the last hidden state restored to full length;
- edgekit's mean-pooled sentence embedder (`.encoder` is such a model, as `models.hf` builds
  it): returns the mean-pooled embedding.

What `ReducedBert` changes, and nothing else: each token carries a size, the number of real
tokens it stands for, starting at the attention mask (padding has size 0). Attention adds
log(size) to the logits, which is the padding mask at first (log 0 = -inf) and proportional
attention after merges. Between attention and the feed-forward, a reduction step removes the
scheduled number of tokens; merges that involve padding rank first and add zero weight, so
padding never leaks into real tokens. Mean pooling weights each token by its size, i.e. by the
real tokens it holds. Weights are shared with the wrapped model, which is not modified."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.errors import StageError
from edgekit.tokens.merge import Tokens, attention, restore, split_heads
from edgekit.tokens.plan import Method, reduce_step


def _bert(model: Any) -> Any:
    inner = getattr(model, "encoder", None)
    if inner is not None and hasattr(inner, "embeddings") and hasattr(getattr(inner, "encoder", None), "layer"):
        return inner
    if hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer"):
        return model
    return None


def is_bert(model: Any) -> bool:
    return _bert(model) is not None


def depth(model: Any) -> int:
    return len(_bert(model).encoder.layer)


class ReducedBert(nn.Module):
    """The wrapped encoder with a static per-layer reduction schedule (see module docstring)."""

    def __init__(self, model: nn.Module, removed: list[int], method: Method = "merge",
                 proportional: bool = True, protected: int = 1) -> None:
        super().__init__()
        bert = _bert(model)
        if bert is None:
            raise StageError(f"tokens: {type(model).__name__} is not a BERT-family encoder "
                             "(embeddings + encoder.layer)")
        self.model = model
        self.bert = bert
        self.pooled = bert is not model
        if len(removed) != len(bert.encoder.layer):
            raise StageError(f"tokens: schedule has {len(removed)} entries, the model has "
                             f"{len(bert.encoder.layer)} layers")
        self.removed = list(removed)
        self.method = method
        self.proportional = proportional
        self.protected = protected
        self.family = f"hf-{getattr(bert.config, 'model_type', 'bert')}"
        self.train(model.training)  # a new Module starts in training mode; mirror the model's

    def widths(self) -> tuple[int, int]:
        cfg = self.bert.config
        return cfg.hidden_size, cfg.intermediate_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.bert.embeddings(input_ids=input_ids)
        size = attention_mask.to(x.dtype).unsqueeze(-1)
        t = Tokens(x, size, None if self.pooled else Tokens.start(x, True).source)
        for layer, r in zip(self.bert.encoder.layer, self.removed):
            sa, so = layer.attention.self, layer.attention.output
            heads = sa.num_attention_heads
            q, k, v = (split_heads(f(t.x), heads) for f in (sa.query, sa.key, sa.value))
            keys = t.size if self.proportional else (t.size > 0).to(x.dtype)
            ctx, probs = attention(q, k, v, (q.shape[-1]) ** -0.5, keys.log().squeeze(-1)[:, None, None, :])
            t = Tokens(so.LayerNorm(so.dense(ctx) + t.x), t.size, t.source)
            t = reduce_step(self.method, t, r, k, probs, self.protected, mask_aware=True)
            h = layer.output.LayerNorm(layer.output.dense(layer.intermediate(t.x)) + t.x)
            t = Tokens(h, t.size, t.source)
        if self.pooled:
            return (t.x * t.size).sum(1) / t.size.sum(1).clamp(min=1e-9)
        return restore(t.x, t.source)


def bucket_for(lengths: np.ndarray, buckets: list[int]) -> np.ndarray:
    """The smallest bucket length that holds each sequence (real tokens, from the mask).

    With one static-shape model exported per bucket, a sentence runs at the shortest length
    that holds it, so padding is dropped without dynamic shapes; a sequence longer than the
    largest bucket is an error, never silently truncated."""
    b = np.sort(np.asarray(buckets))
    idx = np.searchsorted(b, np.asarray(lengths), side="left")
    if (idx >= len(b)).any():
        too_long = int(np.asarray(lengths)[idx >= len(b)].max())
        raise StageError(f"tokens: a sequence of {too_long} tokens exceeds the largest bucket {int(b[-1])}")
    return b[idx]


def to_bucket(feeds: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Cut padded feeds to `length` tokens (only padding is cut: checked)."""
    mask = feeds["attention_mask"]
    if mask[:, length:].any():
        raise StageError(f"tokens: cutting to {length} tokens would drop real tokens")
    return {k: v[:, :length] for k, v in feeds.items()}
