"""TensorRT engines (.engine/.plan) on an NVIDIA GPU, imported only when asked for.

Device buffers are torch CUDA tensors: torch is already a core dependency, so no pycuda or
cuda-python is needed. `run` copies the feeds in, enqueues on one stream and synchronizes, so a
timed call is the host-observed latency (what trtexec calls "latency", not "GPU compute")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.backends import require
from edgekit.errors import BackendUnavailable
from edgekit.runtimes.base import Runner
from edgekit.runtimes.registry import RuntimeInfo

NAME = "tensorrt"
FORMAT = "tensorrt"  # a serialized engine, built for one GPU and TensorRT version

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.tensorrt.runner:TensorRTRunner", formats=(FORMAT,), extra="tensorrt",
    summary="TensorRT engines (.engine/.plan) on an NVIDIA GPU.", suffixes=(".engine", ".plan"),
    hardware="nvidia-gpu", records=("device",), unavailable="edgekit.runtimes.tensorrt.runner:missing",
    # the lint reads the ONNX file an engine is built from: it runs anywhere, GPU or not
    compatibility="edgekit.runtimes.tensorrt.lint:lint",
)


class TensorRTRunner(Runner):
    runtime = NAME

    def __init__(self, path: Path, threads: int) -> None:
        trt = require("tensorrt", extra="tensorrt", why="TensorRT engines")
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable(f"tensorrt: {path.name} needs an NVIDIA GPU with CUDA; none is visible here")
        self.torch = torch
        t0 = time.perf_counter()
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"tensorrt: cannot deserialize {path.name} (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.load_s = time.perf_counter() - t0
        self.stream = torch.cuda.Stream()
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendUnavailable(f"tensorrt: {path.name} tensor {name!r} has dynamic shape {shape}; "
                                         "build the engine with a static shape to profile it")
            dtype = torch.from_numpy(np.zeros(1, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            buf = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, buf.data_ptr())
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = buf
        self.details = {"threads": threads, "device": torch.cuda.get_device_name(), "tensorrt": trt.__version__}

    _holds = ("context", "engine", "inputs", "outputs", "stream")

    def close(self) -> None:
        Runner.close(self)
        self.inputs, self.outputs = {}, {}

    def example_feeds(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(tuple(v.shape), dtype=self.torch.empty(0, dtype=v.dtype).numpy().dtype)
                for k, v in self.inputs.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.cuda.stream(self.stream):
            for k, buf in self.inputs.items():
                buf.copy_(self.torch.from_numpy(np.ascontiguousarray(feeds[k])), non_blocking=False)
            self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return [v.cpu().numpy() for v in self.outputs.values()]


def missing(info: Optional[RuntimeInfo] = None) -> Optional[str]:
    """Why engines cannot be built or run here (no tensorrt package, no CUDA GPU), or None."""
    from edgekit.core.backends import is_available

    if not is_available("tensorrt"):
        return "the tensorrt package is not installed (pip install 'edgekit[tensorrt]')"
    import torch

    if not torch.cuda.is_available():
        return "no NVIDIA GPU with CUDA is visible here"
    return None
