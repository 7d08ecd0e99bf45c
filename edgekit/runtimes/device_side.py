"""The device-side runtime core: the latency protocol and the ONNX Runtime / OpenVINO sessions,
needing only the Python standard library, numpy and the runtime itself — never torch or edgekit
— so that edgekit can copy this one file to a device (ssh), start it in a fresh process (local
isolation) or under QEMU (emulated CPU classes) and get the same numbers as in-process.

edgekit imports the same functions locally (`edgekit.profile.latency`, `edgekit.runtimes.ort`,
`edgekit.runtimes.ov`, `edgekit.artifact.environment.cpu_info`), so the protocol and the session settings
exist once. Run as a script: `python device_side.py JOB.json` prints one JSON result line."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

# the ISA flags that decide which kernels a runtime picks (edgekit.runtimes.cpu_classes turns them into a class)
FLAGS = ("sse4_2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni",
         "neon", "asimd", "asimddp", "i8mm")


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
    flags = _as_cpuid_says(flags)
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "flags": {f: f in flags for f in FLAGS if f in flags or f.startswith(("avx", "amx", "sse"))},
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


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set in MiB. Linux: VmHWM, which belongs to the address space
    made at exec — getrusage's ru_maxrss would carry over the parent's peak across fork+exec and
    report the whole edgekit process instead of the runner. Elsewhere ru_maxrss (bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024.0


def timed_loop(run: Callable[[], Any], warmup_s: float, min_duration_s: float, min_iters: int,
               max_duration_s: float, tick: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """First inference timed apart, then a time-based warm-up, then timed runs until both
    `min_duration_s` and `min_iters` are reached, or `max_duration_s` (then `capped` is true).
    `started`/`ended` are epoch seconds of the timed window, for aligning energy traces."""
    t0 = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - t0) * 1000.0
    end_warm = time.perf_counter() + warmup_s
    warm = 0
    while time.perf_counter() < end_warm:
        run()
        warm += 1
    samples: list[float] = []
    started = time.time()
    start = time.perf_counter()
    elapsed = 0.0
    while True:
        s = time.perf_counter()
        run()
        e = time.perf_counter()
        samples.append((e - s) * 1000.0)
        tick(1)
        elapsed = e - start
        if (len(samples) >= min_iters and elapsed >= min_duration_s) or elapsed >= max_duration_s:
            break
    return {
        "samples_ms": [round(v, 5) for v in samples],
        "first_inference_ms": first_ms,
        "warmup_iters": warm,
        "capped": bool(len(samples) < min_iters or elapsed < min_duration_s),
        "started": started,
        "ended": started + elapsed,
    }


def feed_names(session: Any) -> list[str]:
    """The inputs a caller feeds an onnxruntime session: its inputs minus the initializers it lets
    a caller override (edgekit.sources.onnx_file.real_inputs is the same rule on the graph)."""
    overridable = {i.name for i in session.get_overridable_initializers()}
    return [i.name for i in session.get_inputs() if i.name not in overridable]


# ONNX Runtime session entries that only matter where u8 x s8 pairs saturate int16 (x86 without
# VNNI). `session.x64quantprecision=1` computes u8 x s8 as u8 x u8 on every x86 CPU, also where
# VNNI or AMX sums in int32 and nothing can saturate: there it gives the same outputs bit for bit
# (tests/test_quantize_overflow.py, on such a CPU) and more time (1.37x on PP-OCRv4's detector,
# benchmarks/int8_scheme.py; 1.85x on the digits CNN; x86-vnni Intel), so such a CPU skips it.
ONLY_WITHOUT_VNNI = ("session.x64quantprecision",)


def _cpuid() -> dict[str, bool]:
    """The x86 features CPUID reports to this process, through numpy ({} where numpy cannot
    tell). QEMU user mode passes the host's /proc/cpuinfo through unchanged, so only CPUID shows
    what an emulated CPU has."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return {}
    return dict(features)


# /proc/cpuinfo flag -> numpy's CPUID feature name
_CPUID_NAMES = {"sse4_2": "SSE42", "avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI",
                "avx512_bf16": "AVX512BF16"}


def _as_cpuid_says(flags: set[str]) -> set[str]:
    """/proc/cpuinfo's flags, corrected by CPUID where they disagree. Under QEMU user mode
    (`qemu-x86_64 -cpu Haswell`) the file is the host's, so without this an emulated Haswell
    classed itself as the host's x86-vnni or x86-amx. Where CPUID denies a flag the file claims,
    this process runs on another CPU than the file describes, and the flags numpy cannot check
    (AMX, AVX-VNNI) are dropped too rather than trusted."""
    cpuid = _cpuid()
    if platform.machine().lower() not in ("x86_64", "amd64") or not cpuid.get("SSE2"):
        return flags
    confirmed = {f for f, name in _CPUID_NAMES.items() if cpuid.get(name)}
    denied = {f for f in _CPUID_NAMES if f in flags and f not in confirmed}
    unchecked = {f for f in flags if f.startswith("amx_") or f == "avx_vnni"} if denied else set()
    return (flags - denied - unchecked) | confirmed


def int32_dot_products() -> bool:
    """Whether this CPU has AVX-512 VNNI (so ONNX Runtime's u8 x s8 kernels sum in int32), from
    CPUID (see _cpuid). A CPU numpy cannot tell about (AVX-VNNI without AVX-512) counts as
    without: the entry then costs speed, never correctness."""
    return bool(_cpuid().get("AVX512VNNI"))


class OrtModel:
    """An InferenceSession with the settings every edgekit measurement uses (`ort` is the
    imported module, so edgekit can import it with an install hint and a device without edgekit
    can import it plainly). `every_entry` applies ONLY_WITHOUT_VNNI entries on any CPU (to time
    here what a CPU without VNNI runs)."""

    runtime = "onnxruntime"

    def __init__(self, ort: Any, path: str, threads: int, providers: Optional[list[str]] = None,
                 session_config: Optional[dict[str, str]] = None, every_entry: bool = False) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # artifact-specific session settings travel in the manifest (e.g. the INT8 overflow fix
        # `session.x64quantprecision`), so a device without edgekit applies them too
        skipped = {}
        for key, value in (session_config or {}).items():
            if key in ONLY_WITHOUT_VNNI and not every_entry and int32_dot_products():
                skipped[key] = "not applied: this CPU has AVX-512 VNNI (u8 x s8 sums in int32, nothing saturates)"
                continue
            opts.add_session_config_entry(key, str(value))
        t0 = time.perf_counter()
        self.session = ort.InferenceSession(path, opts, providers=providers or ["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - t0
        self.input_names = feed_names(self.session)
        self.details = {"threads": threads, "providers": self.session.get_providers(), "onnxruntime": ort.__version__}
        if session_config:
            self.details["session_config"] = dict(session_config)
        if skipped:
            self.details["session_config_skipped"] = skipped

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})


class OpenVINOModel:
    """A compiled OpenVINO model with the latency hint and the thread count; compile errors
    propagate as RuntimeError."""

    runtime = "openvino"

    def __init__(self, ov: Any, path: str, threads: int, device: str = "CPU", precision: Optional[str] = None) -> None:
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        t0 = time.perf_counter()
        compiled = ov.Core().compile_model(path, device, config)
        self.load_s = time.perf_counter() - t0
        self.request = compiled.create_infer_request()
        # a stateful IR (a language model's KV cache as state) would carry one sample's cache
        # into the next: each run starts from a reset state
        self.stateful = bool(self.request.query_state())
        self.input_names = [p.get_any_name() for p in compiled.inputs]
        self.details = {"threads": threads, "device": device,
                        "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
                        "openvino": ov.get_version()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.stateful:
            self.request.reset_state()
        res = self.request.infer({k: feeds[k] for k in self.input_names}, share_inputs=True)  # no input copy
        return [np.asarray(v) for v in res.values()]


def _open(job: dict[str, Any]) -> Any:
    """The session type is the job's `engine` (edgekit's runtime registry maps each runtime row,
    e.g. an ONNX Runtime execution provider, to one of these two and its options)."""
    engine, path, threads = job.get("engine") or job["runtime"], job["model"], int(job["threads"])
    options = job.get("options") or {}
    if engine == "onnxruntime":
        import onnxruntime as ort

        return OrtModel(ort, path, threads, **options)
    if engine == "openvino":
        import openvino as ov

        return OpenVINOModel(ov, path, threads, **options)
    raise ValueError(f"engine {engine!r} is not supported by the device-side runner; allowed: onnxruntime, openvino")


def outputs_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run each listed model over the same batch-1 samples and save its first output: what
    verification under an emulated CPU (QEMU user-mode) executes, in a process of its own.

    With `partial` (a folder), every sample's output and the progress so far are written there as
    they come, so that the caller, which stops this process at the budget's deadline (one sample
    under QEMU can take minutes), keeps what ran before it."""
    with np.load(job["inputs"]) as z:
        inputs = {k: z[k] for k in z.files}
    n = len(next(iter(inputs.values())))
    results: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    ran: dict[str, dict[str, float]] = {}
    partial = job.get("partial")
    # each model gets an equal share of what is left of the budget, its loading included (so a
    # model that finishes early leaves its rest to the ones after it); it runs samples (at least
    # one) until its share is spent or the samples end
    budget = float(job.get("budget_s") or float("inf"))
    start, began = time.perf_counter(), time.time()

    current: list[Optional[str]] = [None]  # the model in flight: the caller may stop the job early for it

    def note() -> None:
        if partial:
            _progress(partial, {"started": began, "ran": ran, "errors": errors, "current": current[0]})

    note()
    for j, m in enumerate(job["models"]):
        t0 = time.perf_counter()
        share = (budget - (t0 - start)) / (len(job["models"]) - j)
        current[0] = m["key"]
        note()
        try:
            model = _open({**m, "threads": job["threads"]})
            outs = []
            for i in range(n):
                outs.append(np.asarray(model.run({k: v[i:i + 1] for k, v in inputs.items()})[0]))
                ran[m["key"]] = {"samples": len(outs), "seconds": round(time.perf_counter() - t0, 1),
                                 "load_s": round(float(getattr(model, "load_s", 0.0)), 1)}
                if partial:
                    np.save(os.path.join(partial, f"{j}-{i}.npy"), outs[-1])
                note()
                if time.perf_counter() - t0 >= share:
                    break
            results[m["key"]] = np.concatenate(outs)
        except Exception as exc:  # one model failing must not hide the others' results
            first = (str(exc).strip().splitlines() or [""])[0]
            errors[m["key"]] = f"{type(exc).__name__}: {first}"
            note()
    np.savez(job["output"], **results)
    return {"ok": True, "samples": n, "ran": ran, "errors": errors, "cpu": cpu_info(),
            "python": platform.python_version()}


def _progress(folder: str, state: dict[str, Any]) -> None:
    """progress.json in `folder`, replaced whole so that a reader never sees half of it;
    `started` is the wall-clock time the job began, after its imports (the caller's deadline
    counts from there: importing a runtime under QEMU can take a minute)."""
    path = os.path.join(folder, "progress.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


class LoadFailed(Exception):
    """The runtime refused the model: the model's problem, not the device's (edgekit tells the
    two apart by the reply's `phase`)."""


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("mode") == "outputs":
        return outputs_job(job)
    with np.load(job["inputs"]) as z:
        feeds = {k: z[k] for k in z.files}
    try:
        model = _open(job)
    except ImportError:
        raise
    except Exception as exc:
        raise LoadFailed(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}") from exc
    p = job["protocol"]
    result = timed_loop(lambda: model.run(feeds), float(p["warmup_s"]), float(p["min_duration_s"]), int(p["min_iters"]),
                        float(p["max_duration_s"]))
    result.update(ok=True, runtime=job["runtime"], load_s=model.load_s, backend=model.details, peak_rss_mb=peak_rss_mb(),
                  cpu=cpu_info(), gpus=[g["name"] for g in gpu_info()], python=platform.python_version(), hostname=platform.node())
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(json.dumps({"ok": False, "error": "usage: device_side.py JOB.json"}))
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            job = json.load(f)
        result = run_job(job)
    except LoadFailed as exc:
        print(json.dumps({"ok": False, "phase": "load", "error": str(exc)}))
        return 1
    except Exception as exc:  # the one line the caller shows; the device has no edgekit to format it
        first = (str(exc).strip().splitlines() or [""])[0]
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {first}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
