"""A fingerprint of the machine and libraries, for manifests, `doctor` and baseline keys."""

from __future__ import annotations

import platform
from typing import Any

from edgekit.core.backends import KNOWN, version_of

# cpu_info/gpu_info live in the target-side runner, which must run without edgekit on a device
from edgekit.runtimes.device_side import cpu_info, gpu_info  # noqa: F401


def versions() -> dict[str, str | None]:
    return {m: version_of(m) for m in ("torch", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf",
                                       "tensorrt", "transformers") if m in KNOWN}


def fingerprint() -> dict[str, Any]:
    from edgekit.runtimes.cpu_classes import describe

    cpu = cpu_info()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "cpu": {**cpu, "class": describe(cpu)},
        "gpus": gpu_info(),
    }
