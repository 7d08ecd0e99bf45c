"""EViT-style token pruning as pure tensor functions: keep the k tokens the class token attends
to most, fuse the rest into one token weighted by that attention.

Cheaper to export and run than bipartite matching (one TopK over N scores and one Gather, no
N x N similarity), which is what OpenVINO needs to gain from fewer tokens. Hand-written for the
same reason as merge.py: no maintained library ships it outside model-specific forks."""

from __future__ import annotations

import torch

from edgekit.tokens.merge import Tokens


def cls_attention(attn: torch.Tensor, protected: int = 1) -> torch.Tensor:
    """(B, H, N, N) attention probabilities -> (B, N - protected): how much the class token
    (row 0) attends to each unprotected token, averaged over heads."""
    return attn[:, :, 0, protected:].mean(dim=1)


def prune_step(tokens: Tokens, score: torch.Tensor, removed: int, protected: int = 1) -> Tokens:
    """Keep the top tokens by `score` (B, N - protected) and fuse the `removed + 1` others into
    one token (attention- and size-weighted average) appended last: the count falls by exactly
    `removed`. The protected tokens stay first and in order."""
    if removed <= 0:
        return tokens
    x, size = tokens.x, tokens.size
    n_free = x.shape[1] - protected
    keep = n_free - removed - 1
    c = x.shape[-1]
    head, body = x[:, :protected], x[:, protected:]
    s_head, s_body = size[:, :protected], size[:, protected:]
    kept = score.topk(keep, dim=-1).indices  # (B, keep)
    dropped = torch.ones_like(score).scatter(1, kept, torch.zeros_like(kept, dtype=score.dtype))
    w = (score * dropped).unsqueeze(-1) * s_body  # attention x size of each fused token
    fused = (w * body).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1e-12)
    fused_size = (dropped.unsqueeze(-1) * s_body).sum(1, keepdim=True)
    idx = kept.unsqueeze(-1)
    new_x = torch.cat([head, body.gather(1, idx.expand(-1, -1, c)), fused], dim=1)
    new_size = torch.cat([s_head, s_body.gather(1, idx), fused_size], dim=1)
    source = None
    if tokens.source is not None:
        source = _move_source(tokens.source, kept, dropped, protected, keep)
    return Tokens(new_x, new_size, source)


def _move_source(source: torch.Tensor, kept: torch.Tensor, dropped: torch.Tensor, protected: int,
                 keep: int) -> torch.Tensor:
    bsz = kept.shape[0]
    rank = torch.arange(keep, device=kept.device).unsqueeze(0).expand(bsz, -1) + protected
    # every dropped token goes to the fused token (last); every kept one to its new rank
    pos_body = (dropped * (protected + keep)).long().scatter(1, kept, rank)
    head = torch.arange(protected, device=kept.device).unsqueeze(0).expand(bsz, -1)
    return torch.cat([head, pos_body], dim=1).gather(1, source)
