"""What every stage that changes the torch model shares (pruning, token reduction, fine-tuning):
its private working copy, and the layers whose weights such stages touch."""

from __future__ import annotations

import copy
from typing import Any

from edgekit.errors import RecipeError


def working_copy(state: Any, kind: str) -> Any:
    """The model a stage may change: a deep copy the first time a stage changes it, so that the
    loaded model stays the verification reference and the distillation teacher."""
    if state.torch_model is None:
        raise RecipeError(f"kind: {kind} needs a torch model; this recipe's model is ONNX")
    if state.original_model is None:  # the first stage to change weights: never touch what it got
        state.original_model = state.torch_model
        return copy.deepcopy(state.torch_model)
    return copy.deepcopy(state.torch_model) if state.torch_model is state.original_model else state.torch_model


def prunable_layers(model: Any) -> dict[str, Any]:
    """name -> Conv/Linear module (the layers whose widths pruning changes)."""
    import torch

    return {n: m for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))}
