"""Decoder layers of a causal LM with their attention or MLP removed, as a plain Hugging Face
directory carries them.

No family's config can say "layer 7 has no attention", so `prune.depth` writes such a layer with
its output projection (`o_proj`, `down_proj`, and their biases) set to zero — the sublayer then
adds exactly nothing to the residual stream, and transformers, or any other reader, computes the
pruned model from the directory as it is — and lists the removed sublayers in `config.json`
under MARKER. edgekit reads the list back and does what the zero weights cannot do by
themselves:

- `silence` replaces those sublayers' forward by one that returns zeros without computing
  anything, so that PyTorch runs at the pruned model's cost, and training (healing, QAT) gives
  their weights no gradient: a LoRA on a zeroed `o_proj` would otherwise grow the attention
  back;
- the generation targets leave them out of the exported graph, KV cache included (a layer with no
  attention has no cache), numbering the remaining layers' cache entries in order.

A silenced attention still appends a token-long entry of one head of size 1 to the KV cache, so
that the cache's length, which transformers reads from layer 0 to place new tokens, stays right
when layer 0's attention is one of those removed (an entry holding no values reads as length 0)."""

from __future__ import annotations

import types
from typing import Any

from edgekit.errors import ModelLoadError

MARKER = "edgekit_removed_sublayers"
# sublayer -> (its module on a decoder layer, the projection that writes its output)
PARTS = {"attention": ("self_attn", "o_proj"), "mlp": ("mlp", "down_proj")}


def removed(config: Any) -> dict[str, list[int]]:
    """{"attention": [layer, ...], "mlp": [...]} from a config object or its dict; empty parts left out."""
    raw = config.get(MARKER) if isinstance(config, dict) else getattr(config, MARKER, None)
    return {p: sorted(int(i) for i in raw.get(p, [])) for p in PARTS if raw and raw.get(p)}


def attention_layers(config: Any, layers: int) -> list[int]:
    """The decoder layers that keep their attention, hence a KV cache entry, in order."""
    gone = set(removed(config).get("attention", []))
    return [i for i in range(layers) if i not in gone]


def _no_attention(self: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    # transformers 5.2x names the attention's cache argument `cache` (earlier: `past_key_values`)
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is not None:
        empty = hidden.new_zeros(hidden.shape[0], 1, hidden.shape[1], 1)
        cache.update(empty, empty, self.layer_idx)
    return torch.zeros_like(hidden), None


def _no_mlp(self: Any, hidden: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    return torch.zeros_like(hidden)


def silence(model: Any) -> Any:
    """Bind the removed sublayers' stand-in forward on the model's own modules (a bound method
    survives `copy.deepcopy`, which the OpenVINO conversion makes). Returns the model."""
    gone = removed(model.config)
    if not gone:
        return model
    layers = model.model.layers
    for part, idx in gone.items():
        bad = [i for i in idx if not 0 <= i < len(layers)]
        if bad:
            where = f"{getattr(model.config, '_name_or_path', '') or '.'}/config.json"
            raise ModelLoadError(f"{where}: {MARKER}.{part}: layer {bad[0]} is not one of the model's "
                                 f"{len(layers)} decoder layers (0 to {len(layers) - 1})")
        for i in idx:
            stand_in(layers[i], part)
    return model


def stand_in(layer: Any, part: str) -> Any:
    """Put the stand-in forward on one decoder layer's sublayer; returns the sublayer, whose
    own forward comes back with `del sublayer.forward`."""
    sub = getattr(layer, PARTS[part][0])
    sub.forward = types.MethodType(_no_attention if part == "attention" else _no_mlp, sub)
    return sub


def dead_modules(model: Any) -> list[str]:
    """Module-name prefixes of the removed sublayers (`model.layers.7.self_attn.`), whose
    weights no computation reads: a quantizer leaves them float, since the targets drop them."""
    return [f"model.layers.{i}.{PARTS[part][0]}." for part, idx in removed(model.config).items() for i in idx]
