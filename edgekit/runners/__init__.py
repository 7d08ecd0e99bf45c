"""One small runner per runtime: load an artifact, run batch feeds, give numpy outputs.

verify, evaluate and profile all go through these, so an artifact is always judged on the
runtime it will be deployed with."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.backends import require
from edgekit.errors import BackendUnavailable, ModelLoadError, first_line
from edgekit.profile.standalone import OpenVINOModel, OrtModel

RUNTIMES = ("pytorch", "onnxruntime", "openvino", "tensorrt")


class Runner:
    runtime: str = ""
    load_s: Optional[float] = None  # load/compile seconds; None where this runner did not load the model
    details: dict[str, Any]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the session / compiled model now rather than whenever the runner object is
        collected (a caller may keep it, e.g. in a list of results); idempotent. The runner
        cannot run afterwards."""
        for attr in self._holds:
            if hasattr(self, attr):
                setattr(self, attr, None)

    _holds: tuple[str, ...] = ()


class TorchRunner(Runner):
    """Runs a module that is already loaded: its load time belongs to the model source, so
    `load_s` stays None (unmeasured) rather than a 0.0 that reads as a measurement."""

    runtime = "pytorch"
    _holds = ("module",)

    def __init__(self, module: Any, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.module = module.eval()
        self.torch = torch
        self.details = {"threads": threads, "torch": torch.__version__}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.no_grad():
            out = self.module(*[self.torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]


class OrtRunner(OrtModel, Runner):
    _holds = ("session",)

    def __init__(self, path: Path, threads: int, providers: Optional[list[str]] = None,
                 session_config: Optional[dict[str, str]] = None) -> None:
        ort = require("onnxruntime", extra="onnx")
        try:
            OrtModel.__init__(self, ort, str(path), threads, providers, session_config)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(f"onnxruntime: cannot load {path}: {first_line(exc)}") from exc


class OpenVINORunner(OpenVINOModel, Runner):
    _holds = ("request",)  # the infer request holds the compiled model, which holds the plugin's copy

    def __init__(self, path: Path, threads: int, device: str = "CPU", precision: Optional[str] = None) -> None:
        ov = require("openvino", extra="openvino")
        try:
            OpenVINOModel.__init__(self, ov, str(path), threads, device, precision)
        except RuntimeError as exc:
            # a device that is not here is the machine's problem (exit 4); a file OpenVINO cannot
            # read or compile is the model's (exit 2, as ONNX Runtime reports the same file)
            base = device.split(":")[0].split(".")[0]
            if base not in ("AUTO", "HETERO", "MULTI", "BATCH") and base not in ov.Core().available_devices:
                raise BackendUnavailable(f"openvino: cannot compile {path.name} on {device}: no such device here "
                                         f"(available: {', '.join(ov.Core().available_devices)}): {first_line(exc)}") from exc
            raise ModelLoadError(f"openvino: cannot load {path}: {first_line(exc)}") from exc


def open_runner(runtime: str, path: Path, threads: int, **options: Any) -> Runner:
    if runtime == "onnxruntime":
        return OrtRunner(path, threads, **options)
    if runtime == "openvino":
        return OpenVINORunner(path, threads, **options)
    if runtime == "tensorrt":
        from edgekit.runners.tensorrt import TensorRTRunner  # needs tensorrt and a GPU: loaded only here

        return TensorRTRunner(path, threads)
    raise BackendUnavailable(
        f"no runner for runtime {runtime!r} on this machine; available: onnxruntime, openvino, tensorrt"
    )
