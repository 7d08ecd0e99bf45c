"""ONNX Runtime, on the CPU and through its execution providers. Each provider is a row of its
own (`onnxruntime-cuda`, ...) so a recipe picks one per target by name and the manifest records
which ran; the session settings live in device_side.OrtModel, shared with devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgekit.core.backends import require
from edgekit.errors import ModelLoadError, first_line
from edgekit.runtimes.base import Runner
from edgekit.runtimes.device_side import OrtModel
from edgekit.runtimes.registry import Problem, RuntimeInfo

NAME = "onnxruntime"
FORMAT = "onnx"
# target.npu's qnn-htp artifact is a standard QDQ ONNX graph: the CPU row verifies it too, with
# onnxruntime's reference kernels, beside the HTP (see edgekit/runtimes/npu/qnn.py for why it is a
# format of its own)
QNN_FORMAT = "qnn-onnx"


def _row(name: str, provider: str, hardware: str, summary: str, own_kernels: bool = False) -> RuntimeInfo:
    return RuntimeInfo(
        name=name, where="edgekit.runtimes.ort:OrtRunner", formats=(FORMAT, QNN_FORMAT) if name == NAME else (FORMAT,),
        extra="onnx", summary=summary,
        suffixes=(".onnx",) if name == NAME else (), hardware=hardware, engine=NAME, cpu_bound=hardware == "cpu",
        options={"providers": [provider]} if provider != "CPUExecutionProvider" else {},
        records=("providers", "session_config"),
        # an idle session's intra-op workers spin for a while after each run, on a core the timed
        # session could use; turning it off is the fair setting, though alone it did not stop
        # false A/A fails under load (gate/ab.py: fresh sessions every round did)
        side_by_side={"session_config": {"session.intra_op.allow_spinning": "0"}},
        # the TensorRT and OpenVINO providers take what they can and leave the rest to the CPU
        compatibility=f"edgekit.runtimes.ort:check_{provider}" if own_kernels else None,
        unavailable=None if name == NAME else "edgekit.runtimes.ort:missing",
    )


INFOS = (
    _row(NAME, "CPUExecutionProvider", "cpu", "ONNX Runtime, CPU execution provider.", own_kernels=True),
    _row("onnxruntime-cuda", "CUDAExecutionProvider", "nvidia-gpu",
         "ONNX Runtime, CUDA execution provider (the onnxruntime-gpu wheel and an NVIDIA GPU).", own_kernels=True),
    _row("onnxruntime-tensorrt", "TensorrtExecutionProvider", "nvidia-gpu",
         "ONNX Runtime, TensorRT execution provider (onnxruntime-gpu with TensorRT libraries)."),
    _row("onnxruntime-openvino", "OpenVINOExecutionProvider", "cpu",
         "ONNX Runtime, OpenVINO execution provider (the onnxruntime-openvino wheel)."),
)
INFO = INFOS[0]


class OrtRunner(OrtModel, Runner):
    _holds = ("session",)

    def __init__(self, path: Path, threads: int, providers: Optional[list[str]] = None,
                 session_config: Optional[dict[str, str]] = None, every_entry: bool = False) -> None:
        ort = require("onnxruntime", extra="onnx")
        try:
            OrtModel.__init__(self, ort, str(path), threads, providers, session_config, every_entry)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(f"{NAME}: cannot load {path}: {first_line(exc)}") from exc
        # an execution provider that could not start falls back to the CPU silently: say which ran
        self.runtime = NAME if not providers else next((i.name for i in INFOS if i.options.get("providers") == providers), NAME)


def missing(info: RuntimeInfo) -> Optional[str]:
    """Why the row's execution provider cannot run here: it is not in this onnxruntime build."""
    ort = require("onnxruntime", extra="onnx")
    provider = info.options["providers"][0]
    if provider in ort.get_available_providers():
        return None
    return (f"{provider} is not in this onnxruntime build (available: {', '.join(ort.get_available_providers())}); "
            "install the onnxruntime wheel that carries it")


def _kernels(provider: str) -> dict[tuple[str, str], list[tuple[int, int]]]:
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for k in C.get_all_opkernel_def():
        if k.provider == provider:
            domain = "" if k.domain == "ai.onnx" else k.domain
            out.setdefault((domain, k.op_name), []).append(tuple(k.version_range))
    return out


def _check(path: Path, provider: str, target: str) -> list[Problem]:
    """Nodes this build has no kernel for (op type, domain and opset), read from ONNX Runtime's
    own kernel registry, so the answer is this build's, not a snapshot."""
    onnx = require("onnx", extra="onnx")
    require("onnxruntime", extra="onnx")
    kernels = _kernels(provider)
    if not kernels:  # the provider's kernels are not in this build: nothing to check against
        return []
    model = onnx.load(str(path), load_external_data=False)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    local = {f.name for f in model.functions}
    problems = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in local or (node.op_type == "Constant" and node.domain in ("", "ai.onnx")):
            continue  # ONNX Runtime turns Constant nodes into initializers at load: no kernel runs them
        ranges = kernels.get((node.domain, node.op_type))
        version = opsets.get(node.domain, 1)
        if not ranges:
            why = f"no {provider} kernel for {node.domain or 'ai.onnx'}::{node.op_type}"
        elif not any(lo <= version <= hi for lo, hi in ranges):
            why = f"{node.op_type} has no kernel for opset {version} (kernels: {sorted(ranges)})"
        else:
            continue
        problems.append(Problem(target, why, node.op_type, node.name, i,
                                "rewrite it into supported ops or run a stage that removes it"))
    return problems


def check_CPUExecutionProvider(path: Path) -> list[Problem]:
    return _check(path, "CPUExecutionProvider", NAME)


def check_CUDAExecutionProvider(path: Path) -> list[Problem]:
    return _check(path, "CUDAExecutionProvider", "onnxruntime-cuda")



