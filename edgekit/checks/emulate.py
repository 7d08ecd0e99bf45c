"""Run artifacts as another CPU class would, under QEMU user-mode, to verify them on classes this
machine is not.

Why QEMU and not a flag to the runtime: ONNX Runtime and OpenVINO pick their kernels from CPUID
at load time and offer no switch to force the AVX2 ones; `qemu-x86_64 -cpu Haswell` makes the
same unmodified Python, runtime and model see an AVX2 CPU, and reproduced natively measured
AVX2 numbers exactly (docs/cpu-classes.md, benchmarks/cpu_classes.py), at 50-300x the time. The job itself is the target-side runner
(`runtimes/device_side.py` in its `outputs` mode), so nothing of edgekit runs under emulation."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from edgekit.runtimes.cpu_classes import QEMU_MODELS, X86_CLASSES

INSTALL_HINT = "install QEMU user-mode: apt-get install qemu-user (Debian/Ubuntu)"


@dataclass
class Plan:
    """How each declared class gets verified from this machine."""

    native: str
    emulated: dict[str, str] = field(default_factory=dict)  # class -> QEMU CPU model
    unverified: dict[str, str] = field(default_factory=dict)  # class -> why not


def qemu_binary() -> Optional[str]:
    return shutil.which("qemu-x86_64")


def plan(classes: list[str], native: str, enabled: bool = True) -> Plan:
    """Native class first; each other x86 class emulated where QEMU has a model of it and is
    installed; everything else recorded as not verified, with the reason."""
    p = Plan(native=native)
    host_x86 = platform.machine().lower() in ("x86_64", "amd64")
    for cls in classes:
        if cls == native:
            continue
        if cls not in QEMU_MODELS:
            why = ("QEMU cannot emulate it (no AVX-512 in QEMU user-mode)" if cls in X86_CLASSES
                   else "arm64 under qemu-aarch64 is not wired up (docs/cpu-classes.md, arm64)")
            p.unverified[cls] = f"no {cls} CPU here and {why}"
        elif not enabled:
            p.unverified[cls] = "verify.emulate is off in the recipe"
        elif not host_x86:
            p.unverified[cls] = f"emulating {cls} needs an x86-64 host; this is {platform.machine()}"
        elif qemu_binary() is None:
            p.unverified[cls] = f"qemu-x86_64 not found: {INSTALL_HINT}"
        else:
            p.emulated[cls] = QEMU_MODELS[cls]
    return p


@dataclass
class EmulatedRun:
    cls: str
    qemu_model: str
    outputs: dict[str, np.ndarray]
    errors: dict[str, str]
    seconds: float
    host_cpu: str
    ran: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> samples run and seconds taken
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> the stored run it came from
    stopped: Optional[str] = None  # why the job was stopped before it ended (its deadline), if it was
    cut_for: Optional[int] = None  # the minimum sample count a stop at the budget (no grace) relied on

    def record(self, key: str) -> dict[str, Any]:
        """The verification record's fields for one model: where, how long, whether from cache."""
        ran = self.ran.get(key, {})
        # model_seconds includes loading (the budget's share covers both); load_s says how much
        # of it was loading, which under QEMU (OpenVINO compiling a graph) can be most of it
        out = {**self.where(), "seconds": round(self.seconds, 1), "model_seconds": ran.get("seconds"),
               "model_load_seconds": ran.get("load_s")}
        if self.stopped:
            out["stopped"] = self.stopped
        if key in self.cached:
            meta = self.cached[key]
            out.update(from_cache=True, seconds=0.0, emulated_at=meta.get("stored_at"))
        return out

    def where(self) -> dict[str, Any]:
        """How a verification record names this run (the counterpart of cpu.native_where)."""
        return {"cpu_class": self.cls, "mode": "emulated", "cpu_model": f"QEMU {self.qemu_model}",
                "emulator": f"qemu-x86_64 -cpu {self.qemu_model}", "host_cpu": self.host_cpu}


class EmulationError(RuntimeError):
    """QEMU itself failed (not a model): the class stays unverified, with this reason."""


def run_outputs(cls: str, models: list[dict[str, Any]], inputs: dict[str, np.ndarray], threads: int,
                budget_s: Optional[float] = None, cache: bool = True, min_samples: Optional[int] = None
                ) -> EmulatedRun:
    """Run every model in `models` ({key, runtime, model, options}) on `inputs` (stacked batch-1
    samples) under the QEMU model of `cls`. With `cache`, a model whose bytes, runtime, class,
    inputs and threads were emulated before is answered from that run (emulation_cache) and the
    rest share the budget; what ran is stored for next time. `min_samples`: the count a model
    needs to be verified, which lets a budgeted job stop at its budget rather than its grace
    when the sample in flight could not reach it (run_job)."""
    from edgekit.checks import emulation_cache as ec
    from edgekit.runtimes.registry import device_job

    model_name = QEMU_MODELS[cls]
    planned = len(next(iter(inputs.values()))) if inputs else 0
    digest = ec.inputs_digest(inputs) if cache else ""
    keys: dict[str, str] = {}
    hits: dict[str, ec.Entry] = {}
    for m in models if cache else ():
        job = device_job(m["runtime"], m.get("options"))
        try:
            keys[m["key"]] = ec.key(Path(m["model"]), m["runtime"], job["engine"], job["options"], cls, model_name,
                                    digest, threads)
        except OSError:  # a missing model is the run's error to report, not the cache's
            continue
        entry = ec.load(keys[m["key"]], planned, budget_s, min_samples)
        if entry is not None:
            hits[m["key"]] = entry
    todo = [m for m in models if m["key"] not in hits]
    if todo:
        run = _emulate(cls, todo, inputs, threads, budget_s, min_samples)
    else:
        from edgekit.artifact.environment import cpu_info

        run = EmulatedRun(cls, model_name, {}, {}, 0.0, cpu_info()["model"])
    for m in todo if cache else ():
        k = m["key"]
        if k not in keys or k in run.errors:
            continue
        if k in run.outputs:
            ec.store(keys[k], run.outputs[k], planned, run.ran.get(k, {}).get("seconds"), budget_s, run.cut_for)
        elif budget_s is not None:
            # its share of the budget ran out before its first sample finished: a rerun under a
            # budget no larger would end the same way, so that is kept too (a 135M-parameter LM's
            # OpenVINO folder under QEMU Haswell spent its whole share again on a warm rebuild)
            ec.store(keys[k], np.empty((0,), np.float32), planned, run.ran.get(k, {}).get("seconds"), budget_s,
                     run.cut_for)
    for k, entry in hits.items():
        run.outputs[k] = entry.outputs
        run.ran[k] = {"samples": len(entry.outputs), "seconds": entry.meta.get("seconds")}
        run.cached[k] = entry.meta
    return run


def _emulate(cls: str, models: list[dict[str, Any]], inputs: dict[str, np.ndarray], threads: int,
             budget_s: Optional[float], min_samples: Optional[int] = None) -> EmulatedRun:
    """One emulated process for all of `models`, each for its share of `budget_s` (loading
    included), stopped at the budget's deadline (run_job)."""
    qemu = qemu_binary()
    if qemu is None:
        raise EmulationError(f"qemu-x86_64 not found: {INSTALL_HINT}")
    return run_job(cls, [qemu, "-cpu", QEMU_MODELS[cls]], None, models, inputs, threads, budget_s, min_samples)


# a budgeted job is stopped this long after its budget (counted from when it began, after its
# imports): the sample running when the budget ran out may finish, one that would take minutes
# under QEMU may not (a 135M-parameter LM's x86-avx2 check ran 16 minutes past a 15-minute
# budget on one last sample before this deadline existed)
GRACE_S = 60.0
START_LIMIT_S = 600.0  # QEMU's start and the runtime's import, before the job's clock starts
UNBUDGETED_LIMIT_S = 1800.0


def run_job(cls: str, wrapper: list[str], env: Optional[dict[str, str]], models: list[dict[str, Any]],
            inputs: dict[str, np.ndarray], threads: int, budget_s: Optional[float],
            min_samples: Optional[int] = None) -> EmulatedRun:
    """The target-side runner (device_side.py, outputs mode) in a fresh process under `wrapper`
    (QEMU, or nothing) with `env` added: the one job an emulated and a capped native run share.
    A budgeted job is stopped at its deadline and answers with the samples that finished; with
    `min_samples`, already at its budget when the model in flight cannot reach that count."""
    import time

    from edgekit.artifact.environment import cpu_info
    from edgekit.runtimes import device_side
    from edgekit.runtimes.registry import device_job

    model_name = wrapper[2] if len(wrapper) > 2 else "none"
    what = f"emulated {cls} (qemu {model_name})" if wrapper else f"native run as {cls} ({env or {}})"
    with tempfile.TemporaryDirectory(prefix="edgekit-emulate-") as d:
        tmp = Path(d)
        (tmp / "partial").mkdir()
        np.savez(tmp / "inputs.npz", **inputs)
        entries = [{**m, **device_job(m["runtime"], m.get("options")), "model": str(m["model"])} for m in models]
        job = {"mode": "outputs", "models": entries, "inputs": str(tmp / "inputs.npz"),
               "output": str(tmp / "outputs.npz"), "partial": str(tmp / "partial"), "threads": threads,
               "budget_s": budget_s}
        (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")
        cmd = [*wrapper, sys.executable, device_side.__file__, str(tmp / "job.json")]
        t0 = time.perf_counter()
        stdout, stderr, stopped, cut_for = _run_until_deadline(cmd, env, tmp / "partial", budget_s, min_samples)
        seconds = time.perf_counter() - t0
        if stopped:
            if _progress(tmp / "partial").get("started") is None:  # QEMU or the runtime's import hung
                raise EmulationError(f"{what} {stopped}")
            # each model is judged on what it finished, none included ("not verified: budget"),
            # so that one model too slow for the budget does not hide the others' results
            outputs, errors, ran = _partial_results(tmp / "partial", [m["key"] for m in models])
            return EmulatedRun(cls, model_name, outputs, errors, seconds, cpu_info()["model"], ran, stopped=stopped,
                               cut_for=cut_for)
        reply = _last_json(stdout)
        if reply is None or not reply.get("ok"):
            why = (reply or {}).get("error") or _first_real_line(stderr) or "no reply"
            raise EmulationError(f"{what} failed: {why}")
        with np.load(tmp / "outputs.npz") as z:
            outputs = {k: z[k] for k in z.files}
    return EmulatedRun(cls, model_name, outputs, dict(reply.get("errors") or {}), seconds, cpu_info()["model"],
                       dict(reply.get("ran") or {}))


def _run_until_deadline(cmd: list[str], env: Optional[dict[str, str]], partial: Path, budget_s: Optional[float],
                        min_samples: Optional[int] = None) -> tuple[str, str, Optional[str], Optional[int]]:
    """(stdout, stderr, why it was stopped or None, the `min_samples` an early stop relied on or
    None). The deadline is the job's start (its progress file says when) plus the budget and
    GRACE_S; before the job has started, START_LIMIT_S. The grace lets the sample in flight
    finish; where even that sample would leave its model short of `min_samples` (and every
    model after it gets one sample at most once the budget is spent), the verdict is already
    "not verified: budget", and the job is stopped at the budget itself."""
    import time

    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env} if env else None)
    while True:
        try:
            out, err = proc.communicate(timeout=2.0)
            return out, err, None, None
        except subprocess.TimeoutExpired:
            pass
        state = _progress(partial)
        started = state.get("started")
        if budget_s is not None and started is not None and min_samples and time.time() > float(started) + budget_s:
            current = state.get("current")
            done = int((state.get("ran") or {}).get(current, {}).get("samples", 0))
            if current is not None and done + 1 < min_samples:
                proc.kill()
                out, err = proc.communicate()
                return out, err, (f"stopped at its budget (verify.emulate_budget_s {budget_s:g} s): {current} had "
                                  f"{done} sample(s), and the one in flight could not bring it to "
                                  f"verify.emulate_min_samples {min_samples}"), min_samples
        if budget_s is None:
            deadline, why = t0 + UNBUDGETED_LIMIT_S, f"exceeded {UNBUDGETED_LIMIT_S:.0f} s"
        elif started is None:
            deadline, why = t0 + START_LIMIT_S, f"did not start within {START_LIMIT_S:.0f} s"
        else:
            deadline = float(started) + budget_s + GRACE_S
            why = f"stopped at its deadline (verify.emulate_budget_s {budget_s:g} s + {GRACE_S:.0f} s)"
        if time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            return out, err, why, None


def _progress(partial: Path) -> dict[str, Any]:
    try:
        return json.loads((partial / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet, or being replaced this instant
        return {}


def _partial_results(partial: Path, keys: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str],
                                                              dict[str, dict[str, Any]]]:
    """What a stopped job finished: each model's samples in order (the one running at the
    deadline with what it had done), its errors, and how many samples each ran."""
    state = _progress(partial)
    ran = {k: dict(v) for k, v in (state.get("ran") or {}).items()}
    outputs = {}
    for j, key in enumerate(keys):
        count = int(ran.get(key, {}).get("samples", 0))
        files = [partial / f"{j}-{i}.npy" for i in range(count)]
        if count and all(f.is_file() for f in files):
            outputs[key] = np.concatenate([np.load(f) for f in files])
    return outputs, dict(state.get("errors") or {}), ran


def reverify_run(cls: str, models: list[dict[str, Any]], inputs: dict[str, np.ndarray], threads: int,
                 spec: Any) -> EmulatedRun:
    """`edgekit verify --cpu CLASS`'s emulated run under the recipe's budget and cache; QEMU's own
    failure is the class's (BackendUnavailable), not a model's."""
    from edgekit.errors import BackendUnavailable

    try:
        return run_outputs(cls, models, inputs, threads, spec.emulate_budget_s, spec.emulate_cache,
                           spec.emulate_min_samples)
    except EmulationError as exc:
        raise BackendUnavailable(f"verify: --cpu {cls}: {exc}") from None


def reverified_samples(run: EmulatedRun, key: str, artifact: str, runtime: str, spec: Any,
                       failed: Optional[str] = None) -> int:
    """How many samples `key` ran under `run`'s class, for `edgekit verify --cpu`; a model that did
    not run (or `failed` natively beside it) is a ParityError, a run short of the minimum
    BackendUnavailable ("not verified: budget" is never a pass)."""
    from edgekit.errors import BackendUnavailable, ParityError

    failed = run.errors.get(key) or failed
    if failed:
        raise ParityError(f"verify: artifact {artifact!r} on {runtime} did not run under emulated {run.cls} "
                          f"(qemu {run.qemu_model}): {failed}")
    short = budget_shortfall(run, key, spec.emulate_min_samples, spec.emulate_budget_s)
    if short:
        raise BackendUnavailable(f"verify: --cpu {run.cls}: artifact {artifact!r} on {runtime}: {short}")
    return len(run.outputs[key])


def budget_shortfall(run: EmulatedRun, key: str, min_samples: int, budget_s: float) -> Optional[str]:
    """Why a model's emulated run does not count ("not verified: budget"), or None: it ran fewer
    samples than the minimum in its share of the class's budget. Never a pass."""
    got = len(run.outputs.get(key, ()))
    if got >= min_samples:
        return None
    took = run.ran.get(key, {}).get("seconds")
    if took is not None:
        took_s = f"{took} s"
    elif key in run.cached:
        took_s = f"its share (stored from a run on {run.cached[key].get('stored_at', '?')})"
    else:
        took_s = "its share (the job was stopped at its deadline)" if run.stopped else "? s"
    return (f"not verified: budget: {got} sample(s) in {took_s} under emulated {run.cls}, "
            f"fewer than verify.emulate_min_samples {min_samples} (verify.emulate_budget_s {budget_s:g} s for the "
            f"class, shared by its artifacts); raise the budget or lower the minimum")


def counted(runs: dict[str, Any], emulated: dict[str, str], keys: list[str], min_samples: int, budget_s: float,
            ver: Any, failed: Optional[dict[str, str]] = None) -> Iterator[tuple[str, str, str, EmulatedRun]]:
    """(class, QEMU model, model key, run) for every emulated result that counts; each one that
    does not (QEMU failed, the model failed there or in `failed`, the budget ran out first) is
    recorded in `ver` as not verified, with a warning, and never yielded."""
    for cls, qemu_model in emulated.items():
        res = runs[cls]
        if isinstance(res, EmulationError):
            ver.not_verified[cls] = str(res)
            ver.warnings.append(f"not verified on {cls}: {res}")
            continue
        for key in keys:
            why = res.errors.get(key) or (failed or {}).get(key)
            if why:
                ver.warnings.append(f"{key} did not run under emulated {cls}: {why}")
                ver.not_verified.setdefault(cls, f"{key} did not run under emulation: {why}")
                continue
            short = budget_shortfall(res, key, min_samples, budget_s)
            if short:
                ver.warnings.append(f"{key} on {cls}: {short}")
                ver.not_verified.setdefault(cls, f"{key}: {short}")
                continue
            yield cls, qemu_model, key, res


def _last_json(stdout: str) -> Optional[dict[str, Any]]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _first_real_line(stderr: str) -> str:
    """QEMU warns once per CPUID feature it cannot provide; those are not the error."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and "TCG doesn't support" not in ln]
    return lines[-1].strip() if lines else ""
