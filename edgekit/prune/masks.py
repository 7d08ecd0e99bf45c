"""Unstructured and N:M sparsity masks as pure tensor functions (no model, no state).

- `lamp_scores`: layer-adaptive magnitude pruning (Lee et al., ICLR 2021): a weight's score is
  its squared magnitude over the sum of the squared magnitudes of every weight in its layer at
  least as large. Scores are comparable across layers, so one global threshold picks per-layer
  sparsities; the largest weight of every layer scores 1 and is never removed.
- `sparsity_masks`: keep-masks at a target sparsity, `global` (one magnitude threshold over all
  layers), `layerwise` (each layer to the same sparsity) or `lamp` (one threshold on LAMP scores).
  Exactly round(sparsity x count) weights are removed (ties broken by position).
- `nm_mask`: N:M semi-structured sparsity: in every group of M consecutive weights along the
  input dimension, the N largest in magnitude are kept."""

from __future__ import annotations

from typing import Any


def lamp_scores(w: Any) -> Any:
    import torch

    flat = w.detach().flatten().double().pow(2)
    order = torch.argsort(flat, stable=True)
    s = flat[order]
    # suffix sums: sum of every squared weight at or after this one in ascending order
    suffix = torch.flip(torch.cumsum(torch.flip(s, [0]), 0), [0])
    scores = torch.zeros_like(flat)
    scores[order] = torch.where(suffix > 0, s / suffix.clamp_min(1e-300), torch.zeros_like(s))  # zeros score 0
    return scores.reshape(w.shape)


def _lowest(scores: Any, k: int) -> Any:
    """Boolean mask of the k lowest entries (stable: earlier position first among ties)."""
    import torch

    flat = scores.flatten()
    drop = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        drop[torch.argsort(flat, stable=True)[:k]] = True
    return drop.reshape(scores.shape)


def sparsity_masks(weights: dict[str, Any], sparsity: float, method: str) -> dict[str, Any]:
    """name -> keep-mask (True = kept) for the weights at `sparsity` in [0, 1)."""
    import torch

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if method == "layerwise":
        return {n: ~_lowest(w.detach().abs(), round(sparsity * w.numel())) for n, w in weights.items()}
    if method not in ("global", "lamp"):
        raise ValueError(f"method must be global, layerwise or lamp, got {method!r}")
    score = {n: (lamp_scores(w) if method == "lamp" else w.detach().abs().double()) for n, w in weights.items()}
    names = list(score)
    flat = torch.cat([score[n].flatten() for n in names])
    drop = _lowest(flat, round(sparsity * flat.numel()))
    out, i = {}, 0
    for n in names:
        size = score[n].numel()
        out[n] = ~drop[i : i + size].reshape(score[n].shape)
        i += size
    return out


def nm_layout(w: Any) -> Any:
    """The weight as rows of its input dimension: (out, in) for Linear; (out, kh, kw, in) for a
    conv, so that a group of M is M consecutive input channels at one kernel position."""
    return w if w.ndim == 2 else w.permute(0, *range(2, w.ndim), 1)


def nm_mask(w: Any, n: int, m: int) -> Any:
    """Keep-mask of `w` (Linear (out, in) or Conv (out, in, *k)) with N of every M consecutive
    input weights kept; the input dimension must be divisible by M."""
    import torch

    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m, got n={n}, m={m}")
    rows = nm_layout(w.detach())
    if rows.shape[-1] % m:
        raise ValueError(f"input dimension {rows.shape[-1]} is not divisible by m={m}")
    groups = rows.abs().reshape(-1, m)
    keep_idx = torch.topk(groups, n, dim=1, sorted=False).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep_idx, True).reshape(rows.shape)
    if w.ndim == 2:
        return keep
    return keep.permute(0, w.ndim - 1, *range(1, w.ndim - 1))
