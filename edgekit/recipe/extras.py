"""Which edgekit extras a recipe needs, for `validate` and the check before a run."""

from __future__ import annotations

from typing import Any

from edgekit.runtimes import registry as runtimes
from edgekit.stages import registry as stage_registry


def required_extras(recipe: Any) -> list[str]:
    """Extras a recipe needs: its stages', its targets' runtimes, and its model source's."""
    need: list[str] = []
    for s in recipe.stages:
        need += list(stage_registry.get(s.kind).extras)
    # a CPU runtime must be here; an accelerator's is skipped with a note where it is missing
    need += [runtimes.get(t).extra for t in recipe.targets if runtimes.get(t).hardware == "cpu"]
    if recipe.model.kind in ("hf", "gguf"):
        need.append("hf")
    if recipe.model.kind == "gguf":  # transformers reads a GGUF through gguf and accelerate
        need.append("llm")
    module, _, name = (recipe.model.python or "").partition(":")
    if module == "edgekit.models.zoo":
        from edgekit.models.zoo import EXTRAS

        need += list(EXTRAS.get(name, ()))
    for spec in (recipe.data.calibration, recipe.data.evaluation):
        if spec is not None and spec.builtin == "sentences":
            need.append("hf")
    return list(dict.fromkeys(need))
