"""The pruning history as plain JSON (its replay on a fresh copy of the source model is
`edgekit.prune.rebuild`).

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

from typing import Any

import numpy as np

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
