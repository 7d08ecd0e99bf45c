"""Token merging as pure tensor functions: bipartite soft matching (ToMe), size-weighted
averaging, proportional attention, and the merge map that restores the full token grid.

Written by hand because no maintained library offers it outside timm patches, and those use
`scatter_reduce` and data-dependent shapes that do not export. Every function here keeps the
token count static for a given `r` (so the graph exports at opset >= 17 with fixed shapes) and
uses only ops that ONNX Runtime and OpenVINO run: TopK, Gather(Elements), ScatterElements with
add (`scatter_add`: `scatter_reduce` exports to an `If` that ONNX Runtime rejects) and
`expand(-1, -1, c)` rather than shapes computed at trace time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

NEG = -1e4  # "never pick": finite so that TopK and exported graphs never see inf - inf


@dataclass
class Tokens:
    """Tokens between blocks: features, how many original tokens each one stands for, and
    (when a dense head needs it) where each original token went."""

    x: torch.Tensor  # (B, N, C)
    size: torch.Tensor  # (B, N, 1) float: original tokens merged into each token
    source: Optional[torch.Tensor] = None  # (B, N0) long: current index of each original token

    @staticmethod
    def start(x: torch.Tensor, track_source: bool = False) -> "Tokens":
        b, n, _ = x.shape
        size = torch.ones_like(x[..., :1])
        source = None
        if track_source:
            source = torch.arange(n, device=x.device).unsqueeze(0).expand(b, -1)
        return Tokens(x, size, source)


def proportional_bias(size: torch.Tensor) -> torch.Tensor:
    """log(size) per key, shaped (B, 1, 1, N) to add to attention logits: a token that stands
    for s originals gets the attention weight those s tokens would have had together, and a
    size-0 token (padding) gets none (log 0 = -inf, as a mask)."""
    return size.log().squeeze(-1)[:, None, None, :]


def _gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _split(t: torch.Tensor, halves: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B): even/odd tokens (ToMe), or with `halves` the tail half / head half, which puts
    right-padding in A so that it is what gets merged away first."""
    if halves:
        nb = t.shape[1] // 2
        return t[:, nb:], t[:, :nb]
    return t[:, ::2], t[:, 1::2]


def bipartite_soft_matching(
    metric: torch.Tensor, r: int, protected: int = 1, empty: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the r most similar (src in A, dst in B) pairs, A = even tokens, B = odd tokens.

    Returns (src_a, node_idx): indices into A of the r merged tokens, and for every A token its
    most similar B token (its destination if merged). `protected` leading tokens are never
    merged away nor merged into. `empty` (B, N) float, 1 for tokens of size 0 (right-padding),
    switches to the halves split and ranks every empty A token first: merging it adds zero
    weight to its destination, so padding is consumed before two real tokens are averaged.

    One TopK of r replaces ToMe's full argsort, and the kept set is its complement (a mask, see
    `merge`), so ties between scores can never put a token in both sets."""
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    halves = empty is not None
    a, b = _split(metric, halves)
    scores = a @ b.transpose(-1, -2)  # (B, Na, Nb)
    na, nb = scores.shape[-2], scores.shape[-1]
    if halves:
        scores = scores + 3.0 * _split(empty, True)[0].unsqueeze(-1)  # cosine <= 1: outranks real pairs
    if protected:
        pa, pb = (0, protected) if halves else ((protected + 1) // 2, protected // 2)
        rows = torch.arange(na, device=metric.device) < pa
        cols = torch.arange(nb, device=metric.device) < pb
        scores = scores.masked_fill(rows[None, :, None], 2 * NEG).masked_fill(cols[None, None, :], 2 * NEG)
    node_max, node_idx = scores.max(dim=-1)  # (B, Na)
    return node_max.topk(r, dim=-1).indices, node_idx


def merge(tokens: Tokens, src_a: torch.Tensor, node_idx: torch.Tensor, halves: bool = False) -> Tokens:
    """Size-weighted average of each merged A token into its B destination.

    Output order: the unmerged A tokens in their original order (so the class token stays
    first), then all B tokens; with `halves`, B (the head half) then the unmerged A tokens, so
    padding stays at the tail. The unmerged tokens are packed by a running count of the keep
    mask and a scatter_add (merged ones all land in one spare slot that is cut off), which
    needs no sort."""
    x, size = tokens.x, tokens.size
    bsz, n, c = x.shape
    r = src_a.shape[1]
    xs = x * size
    xa, xb = _split(xs, halves)
    sa, sb = _split(size, halves)
    na, nb = xa.shape[1], xb.shape[1]
    kept = na - r
    dst = node_idx.gather(1, src_a).unsqueeze(-1)
    xb = xb.scatter_add(1, dst.expand(-1, -1, c), _gather_rows(xa, src_a))
    sb = sb.scatter_add(1, dst, _gather_rows(sa, src_a))
    keep = torch.ones_like(node_idx).scatter(1, src_a, torch.zeros_like(src_a))  # (B, Na) 1 = kept
    slot = torch.where(keep > 0, keep.cumsum(1) - 1, torch.full_like(keep, kept))
    both = torch.cat([xa, sa], dim=-1)
    packed = torch.zeros(bsz, kept + 1, c + 1, dtype=x.dtype, device=x.device)
    packed = packed.scatter_add(1, slot.unsqueeze(-1).expand(-1, -1, c + 1), both)[:, :kept]
    first = (xb, sb) if halves else (packed[..., :c], packed[..., c:])
    second = (packed[..., :c], packed[..., c:]) if halves else (xb, sb)
    new_size = torch.cat([first[1], second[1]], dim=1)
    # size-0 tokens (padding) stay zero instead of 0/0; real tokens have size >= 1
    new_x = torch.cat([first[0], second[0]], dim=1) / new_size.clamp(min=1e-6)
    source = None
    if tokens.source is not None:
        # where each current token lands, then where each original token lands
        steps = torch.arange(nb, device=x.device).unsqueeze(0).expand(bsz, -1)
        if halves:
            pos = torch.cat([steps, torch.where(keep > 0, nb + slot, node_idx)], dim=1)
        else:
            pos_a = torch.where(keep > 0, slot, kept + node_idx)
            order = torch.argsort(torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])).to(x.device)
            pos = torch.cat([pos_a, kept + steps], dim=1)[:, order]
        source = pos.gather(1, tokens.source)
    return Tokens(new_x, new_size, source)


def restore(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Expand reduced tokens back to the original grid: every original token takes the
    features of the token it was merged into (ToMe-for-SD's unmerge, ClustViT's regenerator)."""
    return _gather_rows(x, source)


def merge_step(tokens: Tokens, metric: torch.Tensor, r: int, protected: int = 1,
               mask_aware: bool = False) -> Tokens:
    """One ToMe step on `tokens` matched by `metric` (usually the attention keys);
    `mask_aware` (right-padded text) merges size-0 padding tokens away first."""
    if r <= 0:
        return tokens
    empty = (tokens.size.squeeze(-1) <= 0).to(metric.dtype) if mask_aware else None
    return merge(tokens, *bipartite_soft_matching(metric, r, protected, empty), halves=mask_aware)


def max_r(n: int, protected: int) -> int:
    """The most tokens one bipartite step can remove from n: every unprotected A token."""
    return (n + 1) // 2 - (protected + 1) // 2


def schedule(r: int | list[int], depth: int, decreasing: bool = False,
             layers: Optional[list[int]] = None) -> list[int]:
    """Tokens removed at each of `depth` layers.

    An int r removes r at every layer (or only at `layers`, for fewer, larger merge points);
    `decreasing` keeps the same total but front-loads it linearly (more early, none last); a
    list is taken as given."""
    if isinstance(r, list):
        return list(r)
    where = list(range(depth)) if layers is None else sorted(set(layers))
    total = r * len(where)
    if not decreasing:
        return [r if i in where else 0 for i in range(depth)]
    weights = [len(where) - j for j in range(len(where))]
    share = [total * w // sum(weights) for w in weights]
    for j in range(total - sum(share)):
        share[j % len(share)] += 1
    out = [0] * depth
    for i, s in zip(where, share):
        out[i] = s
    return out


def token_counts(n: int, removed: list[int]) -> list[int]:
    """Token count after each layer's reduction, starting from n."""
    counts = []
    for r in removed:
        n -= r
        counts.append(n)
    return counts


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, width) -> (batch, heads, tokens, width / heads), for the adapters."""
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
              bias: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention over (B, H, N, D) with an optional additive key bias (mask and/or
    log-size); returns (context (B, N, H*D), probabilities) so pruning can read the class row."""
    logits = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        logits = logits + bias
    probs = logits.softmax(dim=-1)
    ctx = probs @ v
    b, h, n, d = ctx.shape
    return ctx.transpose(1, 2).reshape(b, n, h * d), probs
