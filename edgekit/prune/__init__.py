"""Pruning stages (`prune.structured`, `prune.magnitude`, `prune.nm`, `prune.depth`) and the
replay of their recorded history on a fresh model.

Nothing heavy is imported here: torch and Torch-Pruning load inside the functions that use them."""

from __future__ import annotations

from typing import Any


def replay(history: Any, fresh_model: Any) -> Any:
    """Rebuild a pruned architecture on a fresh copy of the source model (see `rebuild.replay`)."""
    from edgekit.prune.rebuild import replay as _replay

    return _replay(history, fresh_model)


__all__ = ["replay"]
