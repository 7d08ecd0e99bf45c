"""A fingerprint of the machine and libraries, for manifests, `doctor` and baseline keys."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

from edgekit.backends import KNOWN, version_of

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni", "neon", "asimd")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "flags": {f: f in flags for f in FLAGS if f in flags or f.startswith(("avx", "amx"))},
    }


def gpu_info() -> list[dict[str, str]]:
    """GPUs seen by nvidia-smi (no CUDA library is imported for this)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def versions() -> dict[str, str | None]:
    return {m: version_of(m) for m in ("torch", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf",
                                       "tensorrt", "transformers") if m in KNOWN}


def fingerprint() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "cpu": cpu_info(),
        "gpus": gpu_info(),
    }
