"""Which attention / MLP sublayers of a causal LM's decoder layers to remove, by two scores on
calibration text ("What Matters in Transformers" and FinerCut at sublayer granularity):

- `cosine`: 1 - the mean cosine of the residual stream before and after the sublayer (how much
  the sublayer turns it); the least turning ones go.
- `greedy`: remove, one at a time, the sublayer whose removal changes the model's next-token
  distribution least (KL per token from the unpruned model), re-scoring after each removal.

Either way one attention sublayer always stays: the KV cache, and the position it gives new
tokens, live in the attention layers. How a removed sublayer is written and exported is
edgekit.sources.lm_sublayers's."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from edgekit.prune.lm_depth import decoder_blocks
from edgekit.sources.lm_sublayers import stand_in

Unit = tuple[int, str]  # (decoder layer, "attention" | "mlp")


def _mid_norm(layer: Any) -> Any:
    """The norm that opens the MLP, whose input is the residual stream after the attention
    (Gemma's pre_feedforward_layernorm; post_attention_layernorm elsewhere)."""
    return getattr(layer, "pre_feedforward_layernorm", None) or layer.post_attention_layernorm


def influence(model: Any, windows: Sequence[np.ndarray], parts: Sequence[str]) -> dict[Unit, float]:
    """1 - mean cosine of the residual stream entering and leaving each sublayer, over tokens and windows."""
    import torch
    import torch.nn.functional as F

    layers = decoder_blocks(model)
    seen: dict[tuple[int, str], Any] = {}

    def keep(key: tuple[int, str], x: Any) -> None:
        seen[key] = (x[0] if isinstance(x, (tuple, list)) else x)[0].detach().to(torch.float64)

    handles = []
    for i, layer in enumerate(layers):
        for where, mod in (("in", layer), ("mid", _mid_norm(layer))):
            handles.append(mod.register_forward_pre_hook(
                lambda _m, args, kwargs, key=(i, where): keep(key, args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True))
        handles.append(layer.register_forward_hook(lambda _m, _a, out, key=(i, "out"): keep(key, out)))
    sums: dict[Unit, list[float]] = {}
    try:
        with torch.no_grad():
            for w in windows:
                seen.clear()
                model(torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)), use_cache=False)
                for i in range(len(layers)):
                    spans = {"attention": ("in", "mid"), "mlp": ("mid", "out")}
                    for part in parts:
                        a, b = spans[part]
                        cos = F.cosine_similarity(seen[(i, a)], seen[(i, b)], dim=-1).clamp(-1, 1)
                        sums.setdefault((i, part), []).append(float(1 - cos.mean()))
    finally:
        for h in handles:
            h.remove()
    return {u: float(np.mean(v)) for u, v in sums.items()}


def _allowed_next(unit: Unit, gone: list[Unit], layers: int) -> bool:
    """False where taking `unit` would leave no attention sublayer."""
    attention = {i for i, p in gone if p == "attention"}
    return unit[1] != "attention" or len(attention | {unit[0]}) < layers


def by_influence(scores: dict[Unit, float], drop: int, layers: int, earlier: Sequence[Unit] = ()) -> list[Unit]:
    """The `drop` least turning sublayers, one attention always kept (`earlier`: removed by a
    previous stage)."""
    out: list[Unit] = []
    for u in sorted(scores, key=lambda u: scores[u]):
        if len(out) < drop and _allowed_next(u, [*out, *earlier], layers):
            out.append(u)
    return out


def _silenced(model: Any, unit: Unit) -> Any:
    return stand_in(decoder_blocks(model)[unit[0]], unit[1])


def greedy(model: Any, windows: Sequence[np.ndarray], drop: int, candidates: Sequence[Unit],
           tick: Callable[[int], None], earlier: Sequence[Unit] = ()) -> tuple[list[Unit], list[dict[str, Any]]]:
    """Remove `drop` sublayers one at a time, each time the one whose removal gives the least KL
    per token from the unpruned model's next-token distribution. Returns them in removal order
    and every step's score of every candidate. The model is left as it came.

    Each candidate costs a whole forward per window (a removed sublayer sits inside a block, so
    the block inputs cached for block removal do not shortcut it)."""
    import torch

    from edgekit.quantize.lm_mixed import kl_from

    layers = len(decoder_blocks(model))
    ids = [torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)) for w in windows]
    with torch.no_grad():
        ref = [torch.log_softmax(model(x, use_cache=False).logits[0].to(torch.float32), -1) for x in ids]
    removed: list[Unit] = []
    steps: list[dict[str, Any]] = []
    held = []
    try:
        for _ in range(drop):
            scores: dict[Unit, float] = {}
            for u in candidates:
                if u in removed or not _allowed_next(u, [*removed, *earlier], layers):
                    continue
                sub = _silenced(model, u)
                try:
                    with torch.no_grad():
                        scores[u] = float(np.mean([kl_from(r, model(x, use_cache=False).logits[0])
                                                   for r, x in zip(ref, ids)]))
                finally:
                    del sub.forward
                tick(1)
            best = min(scores, key=lambda u: scores[u])
            removed.append(best)
            held.append(_silenced(model, best))
            steps.append({"removed": label(best), "kl": {label(u): round(v, 6) for u, v in scores.items()}})
    finally:
        for sub in held:
            del sub.forward
    return removed, steps


def label(unit: Unit) -> str:
    return f"model.layers.{unit[0]}:{unit[1]}"
