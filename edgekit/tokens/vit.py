"""Adapter: token reduction for vision transformers, found by duck typing (no timm import).

Recognised layouts
- edgekit's ViT (`edgekit.models.digits_nets.DigitsViT`, `edgekit.models.vit`): `tokens(x)`,
  `blocks[i].{norm1, attn.{qkv, proj, heads, scale}, norm2, mlp}`, `norm`, `head`; with
  `dense = True` (`DigitsSegViT`) the head reads every patch token instead of the class token.
- Hugging Face ViT / DeiT classifiers (`*ForImageClassification`, possibly inside edgekit's
  logits wrapper `.model`): `vit|deit.{embeddings, layers | encoder.layer, layernorm}` with
  layers `{layernorm_before, attention.{q_proj,k_proj,v_proj,o_proj} |
  attention.{attention.{query,key,value}, output.dense}, layernorm_after, mlp |
  intermediate + output.dense}` and `classifier`.

What `ReducedViT` changes, and nothing else: each block's attention is recomputed from the
block's own weights with log(size) added to the logits (proportional attention) once tokens
have been merged; between attention and MLP a reduction step removes the scheduled number of
tokens; the head reads the class token (index 0 stays the class token), or, for a dense model
or an explicit `dense_head`, every token restored to the full grid by the recorded merge map, so
the output keeps one row per original token. The wrapped model's weights
are shared, not copied, and the wrapped model itself is not modified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from edgekit.errors import StageError
from edgekit.tokens.merge import Tokens, attention, proportional_bias, restore, split_heads
from edgekit.tokens.plan import Method, reduce_step


@dataclass
class BlockView:
    """The pieces of one pre-norm block an adapter needs, whatever the layout calls them."""

    norm1: Callable[[torch.Tensor], torch.Tensor]
    qkv: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # -> (B, H, N, D) each
    scale: float
    out: Callable[[torch.Tensor], torch.Tensor]
    norm2: Callable[[torch.Tensor], torch.Tensor]
    mlp: Callable[[torch.Tensor], torch.Tensor]


def _edgekit_block(blk: Any) -> BlockView:
    att = blk.attn

    def qkv(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, c = h.shape
        t = att.qkv(h).reshape(b, n, 3, att.heads, -1).permute(2, 0, 3, 1, 4)
        return t[0], t[1], t[2]

    return BlockView(blk.norm1, qkv, att.scale, att.proj, blk.norm2, blk.mlp)


def _hf_block(layer: Any, heads: int) -> BlockView:
    att = layer.attention
    if hasattr(att, "q_proj"):  # transformers >= 5
        q, k, v, o = att.q_proj, att.k_proj, att.v_proj, att.o_proj
        mlp = layer.mlp
    else:  # transformers 4.x
        q, k, v, o = att.attention.query, att.attention.key, att.attention.value, att.output.dense
        mlp = lambda h: layer.output.dense(layer.intermediate(h))  # noqa: E731
    scale = (q.out_features // heads) ** -0.5
    return BlockView(layer.layernorm_before, lambda h: (split_heads(q(h), heads), split_heads(k(h), heads), split_heads(v(h), heads)),
                     scale, o, layer.layernorm_after, mlp)


@dataclass
class VitLayout:
    embed: Callable[[torch.Tensor], torch.Tensor]
    blocks: list[BlockView]
    norm: Callable[[torch.Tensor], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]  # on the final tokens (B, N, C)
    protected: int  # leading special tokens (class, distillation)
    dim: int
    hidden: int
    family: str
    dense: bool = False  # the head reads every token of the full grid (restore before it)


def find_layout(model: Any) -> VitLayout:
    """Recognise a ViT by its attributes; StageError naming what is missing otherwise."""
    if hasattr(model, "tokens") and hasattr(model, "blocks") and hasattr(model, "head"):
        blk = model.blocks[0]
        dense = bool(getattr(model, "dense", False))
        head = (lambda t: model.head(t[:, 1:])) if dense else (lambda t: model.head(t[:, 0]))
        return VitLayout(model.tokens, [_edgekit_block(b) for b in model.blocks], model.norm, head, 1,
                         blk.attn.qkv.in_features, blk.mlp[0].out_features, "edgekit-vit", dense)
    inner = getattr(model, "model", model)  # edgekit's HF logits wrapper
    body = getattr(inner, "vit", None) or getattr(inner, "deit", None)
    if body is not None and hasattr(inner, "classifier"):
        cfg = body.config
        layers = body.layers if hasattr(body, "layers") else body.encoder.layer
        distilled = hasattr(body.embeddings, "distillation_token")
        classifier = inner.classifier
        return VitLayout(lambda x: body.embeddings(x), [_hf_block(la, cfg.num_attention_heads) for la in layers],
                         body.layernorm, lambda t: classifier(t[:, 0]), 2 if distilled else 1,
                         cfg.hidden_size, cfg.intermediate_size, f"hf-{cfg.model_type}")
    raise StageError(
        f"tokens: {type(model).__name__} is not a recognised vision transformer; expected edgekit's ViT "
        "(tokens/blocks/head) or a Hugging Face ViT/DeiT classifier (vit|deit + classifier)"
    )


class ReducedViT(nn.Module):
    """The wrapped ViT with a static per-layer reduction schedule (see the module docstring)."""

    def __init__(self, model: nn.Module, removed: list[int], method: Method = "merge",
                 proportional: bool = True, protected: int | None = None,
                 dense_head: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model  # registers the weights: export and finetuning see them
        self.dense_head = dense_head
        self.layout = find_layout(model)
        if len(removed) != len(self.layout.blocks):
            raise StageError(f"tokens: schedule has {len(removed)} entries, the model has "
                             f"{len(self.layout.blocks)} blocks")
        self.removed = list(removed)
        self.method = method
        self.proportional = proportional
        self.protected = protected or self.layout.protected
        self.family = self.layout.family
        self.train(model.training)  # a new Module starts in training mode; mirror the model's

    def widths(self) -> tuple[int, int]:
        """(model width, MLP hidden width) for FLOPs accounting."""
        return self.layout.dim, self.layout.hidden

    def encode(self, x: torch.Tensor, track_source: bool = False) -> Tokens:
        lay = self.layout
        t = Tokens.start(lay.embed(x), track_source)
        merged = False
        for blk, r in zip(lay.blocks, self.removed):
            q, k, v = blk.qkv(blk.norm1(t.x))
            bias = proportional_bias(t.size) if (merged and self.proportional) else None
            ctx, probs = attention(q, k, v, blk.scale, bias)
            t = Tokens(t.x + blk.out(ctx), t.size, t.source)
            t = reduce_step(self.method, t, r, k, probs, self.protected)
            merged = merged or r > 0
            t = Tokens(t.x + blk.mlp(blk.norm2(t.x)), t.size, t.source)
        return Tokens(lay.norm(t.x), t.size, t.source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense_head is None and not self.layout.dense:
            return self.layout.head(self.encode(x).x)
        t = self.encode(x, track_source=True)
        full = restore(t.x, t.source)
        return self.dense_head(full) if self.dense_head is not None else self.layout.head(full)
