"""PyTorch eager: the reference a recipe's torch model is judged against, never a deploy target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtimes.base import Runner
from edgekit.runtimes.registry import RuntimeInfo

NAME = "pytorch"
FORMAT = "pytorch"  # an in-memory module: the source, never an artifact

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.pytorch:TorchRunner", formats=(FORMAT,), extra="core",
    summary="PyTorch eager (the source model: the reference outputs and its latency).",
    records=("torch",), deployable=False,
)


class TorchRunner(Runner):
    """Runs a module that is already loaded: its load time belongs to the model source, so
    `load_s` stays None (unmeasured) rather than a 0.0 that reads as a measurement."""

    runtime = INFO.name
    _holds = ("module",)

    def __init__(self, module: Any, threads: int) -> None:
        import torch

        if isinstance(module, Path):
            raise TypeError("pytorch runs a loaded module, not a file")
        torch.set_num_threads(threads)
        self.module = module.eval()
        self.torch = torch
        self.details = {"threads": threads, "torch": torch.__version__}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.no_grad():
            out = self.module(*[self.torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]
