"""The shapes a weight-only block (group) must fit in a causal LM, and the recipe's causal LM
as the generation-side stages read it; shared by the quantizer and both generation targets."""

from __future__ import annotations

from typing import Any

from edgekit.errors import RecipeError

BLOCK_SIZES = (16, 32, 64, 128, 256)
HIDDEN = "hidden_size (q/k/v/gate/up/lm_head input)"


def widths(config: dict[str, Any]) -> dict[str, int]:
    """The input widths of the model's MatMuls, by what they are (a weight-only block must
    divide each one): hidden size for q/k/v/gate/up and lm_head, intermediate size for down,
    heads x head size for o."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    return {HIDDEN: hidden,
            "intermediate_size (down_proj input)": int(config["intermediate_size"]),
            "heads x head_dim (o_proj input)": heads * head_dim}


def check_block(block: int, config: dict[str, Any], field: str = "block_size",
                sizes: tuple[int, ...] = BLOCK_SIZES, hidden_only: bool = False) -> None:
    """A block that does not divide a layer's width would make the quantizer fall back or fail a
    minute in; say which layer and which blocks would do, before anything runs. `hidden_only`:
    only the embeddings and lm_head get this block (the other layers are quantize.weight_only's)."""
    shapes = {k: v for k, v in widths(config).items() if k == HIDDEN or not hidden_only}
    for what, width in shapes.items():
        if width % block:
            ok = [b for b in sizes if all(w % b == 0 for w in shapes.values())]
            raise RecipeError(f"{field}: {block} does not divide {what} = {width}; allowed for this model: "
                              f"{', '.join(map(str, ok)) or 'none (it cannot be group-quantized)'}")


def causal_lm_of(state: Any, kind: str) -> Any:
    """The recipe's causal LM source, which a generation stage builds from (not the torch model)."""
    if state.causal_lm is None:
        raise RecipeError(f"kind: {kind} needs a causal language model (model: {{hf: DIR}} of a *ForCausalLM "
                          "architecture, or {gguf: FILE}); this recipe's model is not one")
    return state.causal_lm
