"""OpenVINO: IR (.xml/.bin) and ONNX files, compiled for a device (CPU here; GPU/NPU where
present); the compile settings live in device_side.OpenVINOModel, shared with devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from edgekit.core.backends import require
from edgekit.errors import BackendUnavailable, ModelLoadError, UsageError, first_line
from edgekit.runtimes.base import Runner
from edgekit.runtimes.device_side import OpenVINOModel
from edgekit.runtimes.registry import Problem, RuntimeInfo

NAME = "openvino"
FORMAT = "openvino"  # the IR pair; OpenVINO reads "onnx" artifacts as well

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.ov:OpenVINORunner", formats=(FORMAT, "onnx"), extra="openvino",
    summary="OpenVINO runtime (IR or ONNX), CPU plugin by default.", suffixes=(".xml",), engine=NAME,
    cpu_bound=True, records=("device", "inference_precision"), compatibility="edgekit.runtimes.ov:check",
    example_feeds="edgekit.runtimes.ov:example_feeds",
)


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
                raise BackendUnavailable(f"{NAME}: cannot compile {path.name} on {device}: no such device here "
                                         f"(available: {', '.join(ov.Core().available_devices)}): {first_line(exc)}") from exc
            raise ModelLoadError(f"{NAME}: cannot load {path}: {first_line(exc)}") from exc


def type_name(value: object) -> str:
    """OpenVINO prints element types as "<Type: 'bfloat16'>" or "bf16": the short name (bf16, f32,
    f16, u8, i8), so that a precision asked for and one read back from a compiled model compare."""
    v = str(value)
    v = v.split("'")[1] if "'" in v else v
    return {"bfloat16": "bf16", "float32": "f32", "float16": "f16", "uint8_t": "u8", "int8_t": "i8"}.get(v, v)


def default_precision() -> str:
    """The float precision this machine's CPU plugin computes in when nothing asks otherwise:
    bf16 on AMX and on AVX-512 BF16 parts (Cooper Lake, AMD Zen 4), f32 elsewhere."""
    ov = require("openvino", extra="openvino")
    return type_name(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def example_feeds(path: Path) -> dict[str, np.ndarray]:
    """Feeds of the IR's own input shapes, for profiling a bare .xml with no data."""
    ov = require("openvino", extra="openvino")
    feeds = {}
    for p in ov.Core().read_model(str(path)).inputs:
        if p.get_partial_shape().is_dynamic:
            raise UsageError(f"{path.name}: input {p.get_any_name()!r} has dynamic shape {p.get_partial_shape()}; "
                             "profile an IR with static shapes")
        dt = p.get_element_type().to_dtype()
        feeds[p.get_any_name()] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(list(p.get_shape()), dtype=dt)
    return feeds


def check(path: Path, device: str = "CPU") -> list[Problem]:
    """What the CPU plugin says it cannot run (query_model), without compiling."""
    ov = require("openvino", extra="openvino")
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:  # OpenVINO's reason is the last line of its chain, not the first
        from edgekit.runtimes.refusal import cause_line

        return [Problem(NAME, f"cannot read the model: {cause_line(exc)}")]
    supported = set(core.query_model(model, device))
    return [Problem(NAME, f"not supported by the {device} plugin", op.get_type_name(), op.get_friendly_name(), i,
                    "rewrite it into supported ops")
            for i, op in enumerate(model.get_ordered_ops())
            if op.get_friendly_name() not in supported and op.get_type_name() not in ("Parameter", "Result", "Constant")]
