"""One small runner per runtime: load an artifact, run batch feeds, give numpy outputs.

verify, evaluate and profile all go through these, so an artifact is always judged on the
runtime it will be deployed with."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.backends import require
from edgekit.errors import BackendUnavailable

RUNTIMES = ("pytorch", "onnxruntime", "openvino")


class Runner:
    runtime: str = ""
    load_s: float = 0.0
    details: dict[str, Any]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TorchRunner(Runner):
    runtime = "pytorch"

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


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int, providers: Optional[list[str]] = None) -> None:
        ort = require("onnxruntime", extra="onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        t0 = time.perf_counter()
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - t0
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.details = {"threads": threads, "providers": self.session.get_providers(),
                        "onnxruntime": ort.__version__}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})


class OpenVINORunner(Runner):
    runtime = "openvino"

    def __init__(self, path: Path, threads: int, device: str = "CPU", precision: Optional[str] = None) -> None:
        ov = require("openvino", extra="openvino")
        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        t0 = time.perf_counter()
        try:
            compiled = core.compile_model(str(path), device, config)
        except RuntimeError as exc:
            raise BackendUnavailable(f"openvino: cannot compile {path.name} on {device}: {str(exc).splitlines()[0]}") from exc
        self.load_s = time.perf_counter() - t0
        self.request = compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in compiled.inputs]
        self.details = {
            "threads": threads,
            "device": device,
            "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "openvino": ov.__version__ if hasattr(ov, "__version__") else ov.get_version(),
        }

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.request.infer({k: feeds[k] for k in self.input_names})
        return [np.asarray(v) for v in res.values()]


def open_runner(runtime: str, path: Path, threads: int, **options: Any) -> Runner:
    if runtime == "onnxruntime":
        return OrtRunner(path, threads, **options)
    if runtime == "openvino":
        return OpenVINORunner(path, threads, **options)
    raise BackendUnavailable(
        f"no runner for runtime {runtime!r} on this machine; available: onnxruntime, openvino"
    )
