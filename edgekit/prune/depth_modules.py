"""The modules `prune.depth` puts in place of dropped sublayers (see `edgekit.prune.depth`)."""

from __future__ import annotations

from typing import Any

import torch


class PreNormBlock(torch.nn.Module):
    """edgekit's pre-norm block with sublayers that may be absent (dropped)."""

    depth_family = "edgekit"

    def __init__(self, block: Any) -> None:
        super().__init__()
        for name in ("norm1", "attn", "norm2", "mlp"):
            setattr(self, name, getattr(block, name, None))

    def forward(self, x: Any) -> Any:
        if self.attn is not None:
            x = x + self.attn(self.norm1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class HFPreNormLayer(torch.nn.Module):
    """A Hugging Face ViT/DeiT layer with sublayers that may be absent (dropped); dropout is
    inactive in eval mode and left out."""

    depth_family = "hf_prenorm"

    def __init__(self, layer: Any) -> None:
        super().__init__()
        for name in ("layernorm_before", "attention", "layernorm_after", "mlp"):
            setattr(self, name, getattr(layer, name, None))

    def forward(self, hidden_states: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        if self.attention is not None:
            hidden_states = hidden_states + self.attention(self.layernorm_before(hidden_states),
                                                           attention_mask, **kwargs)[0]
        if self.mlp is not None:
            hidden_states = hidden_states + self.mlp(self.layernorm_after(hidden_states))
        return hidden_states


class PassAttention(torch.nn.Module):
    """Stands in for a dropped post-norm attention: returns its input (and no weights)."""

    def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        return hidden_states, None


class PassOutput(torch.nn.Module):
    """Stands in for a dropped post-norm FFN output: returns the residual input."""

    def forward(self, hidden_states: Any, input_tensor: Any) -> Any:
        return input_tensor


class PassLayer(torch.nn.Module):
    def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        return hidden_states
