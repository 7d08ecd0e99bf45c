"""Replaying a recorded pruning history on a fresh model. Apart from `history` because it needs
the stages that recorded it (structured channels, depth drops), which themselves write
histories: one module each way, no circle."""

from __future__ import annotations

from typing import Any, Iterable, Union

from edgekit.errors import StageError
from edgekit.prune.history import FORMAT, example_of


def _module(model: Any, name: str) -> Any:
    m = model
    for part in name.split("."):
        if not hasattr(m, part):
            raise StageError(f"replay: layer {name!r} is not in this model (no {part!r}); "
                             "replay needs a fresh copy of the model the history was recorded on")
        m = getattr(m, part)
    return m


def replay(history: Union[dict[str, Any], Iterable[dict[str, Any]]], fresh_model: Any) -> Any:
    """Apply a recorded history (or a list of them, in order) to `fresh_model` in place and
    return it: same layers, same widths, same kept channels, heads and dropped sublayers as the
    pruned model. Its weights are then loaded with `load_state_dict(pruned.state_dict())`."""
    histories = [history] if isinstance(history, dict) else list(history)
    for h in histories:
        if h.get("format") != FORMAT:
            raise StageError(f"replay: history format {h.get('format')!r} is not {FORMAT!r}")
        channel_ops = [op for op in h["ops"] if op["op"] == "channels"]
        if channel_ops:
            from edgekit.prune.structured import replay_channels

            replay_channels(fresh_model, channel_ops, example_of(h))
        for op in h["ops"]:
            if op["op"] == "drop":
                from edgekit.prune.depth import drop

                drop(fresh_model, op["layer"], op["part"])
            elif op["op"] != "channels":
                raise StageError(f"replay: unknown op {op['op']!r}; known: channels, drop")
    return fresh_model
