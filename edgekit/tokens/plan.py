"""What the adapters share: one reduction step by method, and FLOPs per layer before/after.

Kept apart from the adapters so that ViT and BERT apply exactly the same step and report the
same accounting, and apart from merge.py/prune.py so those stay pure algorithms."""

from __future__ import annotations

from typing import Literal

import torch

from edgekit.tokens.merge import Tokens, merge_step, token_counts
from edgekit.tokens.prune import cls_attention, prune_step

Method = Literal["merge", "prune"]


def reduce_step(method: Method, tokens: Tokens, removed: int, keys: torch.Tensor, probs: torch.Tensor,
                protected: int, mask_aware: bool = False) -> Tokens:
    """Remove exactly `removed` tokens: ToMe matching on the mean attention keys, or EViT
    pruning by class-token attention."""
    if removed <= 0:
        return tokens
    if method == "merge":
        return merge_step(tokens, keys.mean(dim=1), removed, protected, mask_aware)
    return prune_step(tokens, cls_attention(probs, protected), removed, protected)


def block_flops(n_attn: int, n_mlp: int, dim: int, hidden: int) -> int:
    """Multiply-adds x 2 of one transformer block: QKV + output projections and QK^T, AV on
    the tokens that enter attention; the MLP on the tokens left after the reduction step."""
    attn = 4 * n_attn * dim * dim + 2 * n_attn * n_attn * dim
    mlp = 2 * n_mlp * dim * hidden
    return 2 * (attn + mlp)


def layer_report(n0: int, removed: list[int], dim: int, hidden: int) -> list[dict[str, int]]:
    """Per layer: tokens in, tokens kept (after the step), FLOPs before and after reduction."""
    kept = token_counts(n0, removed)
    entering = [n0] + kept[:-1]
    return [{"layer": i, "tokens_in": n, "tokens_kept": k,
             "flops_before": block_flops(n0, n0, dim, hidden), "flops_after": block_flops(n, k, dim, hidden)}
            for i, (n, k) in enumerate(zip(entering, kept))]
