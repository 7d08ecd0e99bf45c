"""AWQ through Intel Neural Compressor, with the layers that absorb its scales named by edgekit.

AWQ scales each group of linear layers' input channels by s (and their weights by s along the
input), so that the channels that carry large activations round with less error, and divides
the layer before them (an RMSNorm's weight, or a linear layer's output rows) by the same s: the
float model computes the same function, and only the rounding changes.

Why edgekit names the absorbing layers instead of letting INC find them: INC 3.10 finds them by
tracing the model with torch.jit, and that trace fails on transformers 5's decoder layers; INC
then logs one warning and runs "AWQ" with no scales at all (its clipping search only), a
silent downgrade measured on a tiny Llama. Given the pairs, its AWQ scales as designed.

Which families: those whose decoder block is the Llama layout (a plain RMSNorm before the
attention projections and before the MLP's gate and up projections). Gemma's RMSNorm multiplies
by (1 + weight), so dividing its weight does not divide its output; Phi-3 fuses q/k/v and
gate/up into one layer each. Those are refused in one line (GPTQ and AutoRound need no pairs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.errors import StageError

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
BLOCKS = "model.layers"  # where these families keep their decoder blocks


def absorb_pairs(model: Any, kept: set[str]) -> dict[str, tuple[str, ...]]:
    """INC's absorb table, names relative to a decoder block: absorbing layer -> the linear
    layers whose input scale it takes. A pair with a layer kept in float is left out (INC does
    not see such a layer, and scaling it would change a float weight nobody writes back)."""
    cfg = model.config
    family = getattr(cfg, "model_type", "?")
    if family not in FAMILIES:
        raise StageError(f"quantize.weight_only: algorithm awq: the {family} family is not supported: AWQ needs the "
                         f"Llama block layout (a plain RMSNorm before separate q/k/v and gate/up projections); "
                         f"supported: {', '.join(FAMILIES)}; use algorithm gptq or autoround")
    pairs: dict[str, tuple[str, ...]] = {
        "input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj"),
        "mlp.up_proj": ("mlp.down_proj",),  # silu(gate) * up: up's output rows scale down's inputs
    }
    heads = getattr(cfg, "num_attention_heads", None)
    if getattr(cfg, "num_key_value_heads", heads) == heads:
        # without grouped-query attention each value channel feeds one o_proj input
        pairs["self_attn.v_proj"] = ("self_attn.o_proj",)
    n = int(cfg.num_hidden_layers)
    return {k: v for k, v in pairs.items()
            if not any(f"{BLOCKS}.{i}.{x}" in kept for i in range(n) for x in (k, *v))}


def absorbed_norms(model: Any, pairs: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    """The float weights AWQ changed outside the quantized layers (each block's absorbing
    norms), by parameter name: the targets' float graph must carry them, or the scaled
    projections after them would compute scaled outputs."""
    norms = [k for k in pairs if "norm" in k]
    return {f"{BLOCKS}.{i}.{k}.weight": model.get_submodule(f"{BLOCKS}.{i}.{k}").weight.detach().numpy().copy()
            for i in range(int(model.config.num_hidden_layers)) for k in norms}
