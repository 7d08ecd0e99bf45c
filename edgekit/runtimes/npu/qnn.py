"""Qualcomm's HTP (Hexagon NPU) through ONNX Runtime's QNN execution provider, as the
`onnxruntime-qnn` wheel ships it: a plugin EP plus `libQnnHtp.so`, which on x86-64 Linux is the
HTP backend built for the host, i.e. an emulator of the NPU's integer kernels. A graph is only
called verified here when the EP placed every node on the HTP: CPU fallback is disabled, so a
node the HTP cannot run fails the load, and the EP's own op trace names it.

Format: this runtime reads "qnn-onnx", the format `target.npu` (profile qnn-htp) writes, not
plain "onnx". An ONNX file is an ONNX file, but a float graph (fp32 export, fp16) or a CPU-tuned
INT8 graph (per-channel Gemm weights, 8-bit MatMul x MatMul) is refused by the HTP, so a recipe
that lists qnn-htp would fail on every artifact that target.npu did not make. The NPU artifact
is still a standard QDQ ONNX graph: the CPU onnxruntime row reads "qnn-onnx" too, so the same
file is also verified with onnxruntime's reference kernels."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from edgekit.core.backends import is_available, require
from edgekit.errors import BackendUnavailable, ModelLoadError, first_line
from edgekit.runtimes.base import Runner
from edgekit.runtimes.device_side import feed_names
from edgekit.runtimes.npu.profiles import QNN_FORMAT, QNN_HTP
from edgekit.runtimes.registry import Problem, RuntimeInfo

NAME = QNN_HTP
FORMAT = QNN_FORMAT
# QNN's SoC id the HTP backend compiles for. Its default (0, unknown SoC) could not allocate the
# MiniLM graph here ("Failed to finalize QNN graph: QNN_COMMON_ERROR_MEM_ALLOC"); ids 43, 57, 60
# and 69 load it, 35 lacks a 16-bit Where. See the QAIRT SDK's supported-devices table.
DEFAULT_SOC = "57"

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.npu.qnn:QnnHtpRunner", formats=(FORMAT,), extra="npu",
    summary="Qualcomm HTP (Hexagon NPU) via ONNX Runtime's QNN EP, CPU fallback disabled "
            "(x86-64: the wheel's HTP emulator).",
    hardware="npu", engine=None, cpu_bound=False, records=("soc_model", "backend"),
    compatibility="edgekit.runtimes.npu.qnn:check", unavailable="edgekit.runtimes.npu.qnn:missing",
)

_registered = False


def _register(ort: Any, oq: Any) -> None:
    """The plugin EP library is registered once per process (a second registration under the
    same name is an error in onnxruntime)."""
    global _registered
    if not _registered:
        if not any(d.ep_name == oq.get_ep_name() for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(oq.get_ep_name(), oq.get_library_path())
        _registered = True


def _unsupported(trace_dir: Path) -> list[dict[str, Any]]:
    for f in sorted(trace_dir.glob("*.json")):
        try:
            return list(json.loads(f.read_text()).get("unsupported_nodes") or [])
        except (OSError, ValueError):
            continue
    return []


class QnnHtpRunner(Runner):
    runtime = NAME
    _holds = ("session",)

    def __init__(self, path: Path, threads: int, soc_model: str = DEFAULT_SOC,
                 htp_arch: Optional[str] = None) -> None:
        ort = require("onnxruntime", extra="onnx")
        oq = require("onnxruntime_qnn", extra="npu", why="the QNN HTP backend")
        _register(ort, oq)
        devices = [d for d in ort.get_ep_devices() if d.ep_name == oq.get_ep_name()]
        if not devices:
            raise BackendUnavailable(f"{NAME}: the QNN execution provider registered no device here")
        with tempfile.TemporaryDirectory(prefix="edgekit-qnn-trace-") as trace:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 4  # a refusal is raised below, with the nodes the EP's trace names
            # a node the HTP cannot take must fail the load, never run on the CPU unnoticed
            opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            ep = {"backend_path": oq.get_qnn_htp_path(), "soc_model": str(soc_model),
                  "enable_framework_op_trace": "1", "framework_op_trace_dir": trace}
            if htp_arch:
                ep["htp_arch"] = str(htp_arch)
            opts.add_provider_for_devices(devices, ep)
            t0 = time.perf_counter()
            try:
                with _quiet_stdout():  # the HTP library prints a configuration note on stdout
                    self.session = ort.InferenceSession(str(path), opts)
            except Exception as exc:  # onnxruntime's Fail / EPFail / InvalidGraph
                nodes = _unsupported(Path(trace))
                if nodes:
                    shown = ", ".join(f"{n.get('node_name')!r} ({n.get('op_type')}: {n.get('reason')})" for n in nodes[:5])
                    more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
                    # the cause carries the node list too: a stage refusal quotes the cause (edgekit.runtimes.refusal)
                    detail = RuntimeError(f"{len(nodes)} node(s) the HTP cannot run: {shown}{more}")
                    detail.__cause__ = exc
                    raise ModelLoadError(f"{NAME}: cannot load {path}: {detail}") from detail
                raise ModelLoadError(f"{NAME}: cannot load {path}: {first_line(exc)}") from exc
        self.load_s = time.perf_counter() - t0
        self.input_names = feed_names(self.session)
        self.details = {"threads": threads, "providers": self.session.get_providers(), "soc_model": str(soc_model),
                        "backend": "libQnnHtp (x86-64 emulator)" if _host_is_x86() else "libQnnHtp",
                        "onnxruntime": ort.__version__, "onnxruntime_qnn": getattr(oq, "__version__", "")}

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})

    def where(self) -> dict[str, Any]:
        """How a verification record names this run: the HTP (for one SoC id), emulated on this
        host's CPU where the backend is the x86-64 build — never a CPU class it did not test."""
        from edgekit.runtimes.cpu_classes import native_where

        host = native_where()
        emulated = _host_is_x86()
        return {"cpu_class": f"qnn-htp soc {self.details['soc_model']}", "mode": "emulated" if emulated else "native",
                "cpu_model": "QNN HTP backend (libQnnHtp" + (", x86-64 emulator)" if emulated else ")"),
                "emulator": f"onnxruntime-qnn {self.details['onnxruntime_qnn']} libQnnHtp.so" if emulated else "",
                "host_cpu": host["cpu_class"]}


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Native code writes to file descriptor 1 directly: point it at /dev/null for the load, so
    edgekit's own table stays the only thing on stdout."""
    import os
    import sys

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real fd 1 (embedded interpreters)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _host_is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def missing(info: Optional[RuntimeInfo] = None) -> Optional[str]:
    """Why the HTP backend cannot run here, or None."""
    if not is_available("onnxruntime_qnn"):
        return "the onnxruntime-qnn package is not installed (pip install 'edgekit[npu]'; the wheel's HTP emulator is x86-64 Linux)"
    if not is_available("onnxruntime"):
        return "onnxruntime is not installed (pip install 'edgekit[onnx]')"
    return None


def check(path: Path) -> list[Problem]:
    """Offline: the qnn-htp NPU profile's check (static shapes, integer QDQ precisions, the EP's
    operator table); loading it on the backend is the final word."""
    from edgekit.runtimes.npu.check import check_file

    return check_file(Path(path), NAME)
