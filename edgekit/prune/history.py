"""The pruning history as plain JSON, and its replay on a fresh copy of the source model.

A history is a dict::

    {"format": "edgekit.prune/1",
     "inputs": {name: {"shape": [...], "dtype": "float32"}},   # to trace the fresh model
     "ops": [
        {"op": "channels", "layer": "features.4", "dim": "out", "width_before": 64,
         "pruned": [...], "kept": [...]},                       # one Torch-Pruning group
        {"op": "drop", "layer": "blocks.2.attn", "part": "attention"},   # depth pruning
     ]}

A `channels` op names the group's root layer and dimension; every layer coupled to it (the
BatchNorm after a conv, the next layer's inputs, residual partners, q/k/v/o of the heads) is
re-derived by Torch-Pruning's dependency graph on the fresh model, exactly as when it was cut.
Modules are never pickled: weights go onto the replayed architecture through a state dict."""

from __future__ import annotations

from typing import Any, Iterable, Union

import numpy as np

from edgekit.errors import StageError

FORMAT = "edgekit.prune/1"


def new_history(example: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"format": FORMAT,
            "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in example.items()},
            "ops": []}


def example_of(history: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, spec in history["inputs"].items():
        dt = np.dtype(spec["dtype"])
        out[k] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(spec["shape"], dtype=dt)
    return out


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
