"""One measurement, end to end: a timed model (model file + runtime), a device, the protocol and an
energy meter in, one schema `Measurement` out. `compress` and `edgekit profile` both call this.

Two ways to run: in this process on an open runner (PyTorch eager, TensorRT, or the pipeline's
reference), where peak RSS is this whole process's (isolation `in_process`); or as a job on a
device (`local` = a fresh subprocess, `ssh` = a remote one) running the device-side runner,
where peak RSS is the runner process's own (isolation `subprocess` / `remote`)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import UsageError
from edgekit.profile.devices import SshDevice, run_job
from edgekit.profile.energy import EnergySpec, open_meter
from edgekit.profile.energy.record import EnergyRecorder
from edgekit.profile.schema import Device, Measurement, ModelIdentity, Protocol, device_from, local_device
from edgekit.profile.stats import summarize
from edgekit.runtimes.device_side import peak_rss_mb, timed_loop
from edgekit.runtimes.registry import device_job


@dataclass
class Timed:
    artifact: str
    runtime: str
    format: str
    sha256: str
    path: Optional[Path] = None  # None for an in-memory torch module
    precision: Optional[str] = None
    shown_path: str = ""  # as recorded in the profile (relative to the artifact dir when there is one)
    options: dict[str, Any] = field(default_factory=dict)  # runner options: providers, device, precision


def model_files(path: Path) -> list[Path]:
    """The model file and its siblings of the same stem (OpenVINO .bin, ONNX external data)."""
    return [path] + sorted(p for p in path.parent.glob(path.stem + ".*") if p != path)


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="milliseconds")


def recorder_for(energy: EnergySpec, base_dir: Path) -> EnergyRecorder:
    meter, reason = open_meter(energy, base_dir)
    return EnergyRecorder(meter, reason, energy.idle_s, energy.period_s, named=energy.meter not in ("none", "auto"))


def _build(timed: Timed, raw: dict[str, Any], spec: Any, device: Device, energy: Any, isolation: str,
           batch: int) -> Measurement:
    return Measurement(
        **summarize(np.asarray(raw["samples_ms"])),
        model=ModelIdentity(artifact=timed.artifact, path=timed.shown_path or (str(timed.path) if timed.path else ""),
                            format=timed.format, precision=timed.precision, sha256=timed.sha256),
        runtime=timed.runtime, backend=raw["backend"], device=device, threads=spec.threads, batch=batch,
        protocol=Protocol(warmup_s=spec.warmup_s, min_duration_s=spec.min_duration_s, min_iters=spec.min_iters,
                          max_duration_s=spec.max_duration_s, warmup_iters=raw["warmup_iters"], capped=raw["capped"],
                          isolation=isolation),
        first_inference_ms=raw["first_inference_ms"], load_s=raw["load_s"], peak_rss_mb=raw["peak_rss_mb"],
        started=_iso(raw["started"]), samples_ms=raw["samples_ms"], energy=energy,
    )


def _batch(feeds: dict[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def measure_runner(timed: Timed, runner: Any, feeds: dict[str, np.ndarray], spec: Any, base_dir: Path,
                   tick: Callable[[int], None] = lambda n: None) -> Measurement:
    """In this process, on an already open runner (its load time is the runner's own)."""
    rec = recorder_for(spec.energy, base_dir)
    rec.start()
    raw = timed_loop(lambda: runner.run(feeds), spec.warmup_s, spec.min_duration_s, spec.min_iters,
                     spec.max_duration_s, tick)
    energy = rec.finish(raw["started"], raw["ended"], len(raw["samples_ms"]))
    raw.update(backend=runner.details, load_s=runner.load_s, peak_rss_mb=peak_rss_mb())
    return _build(timed, raw, spec, local_device(), energy, "in_process", _batch(feeds))


def measure_job(timed: Timed, feeds: dict[str, np.ndarray], spec: Any, base_dir: Path,
                device_name: str, device_cfg: Any) -> Measurement:
    """In a fresh runner process on a device (local subprocess or over ssh)."""
    remote = isinstance(device_cfg, SshDevice)
    if remote and spec.energy.meter not in ("none", "external"):
        raise UsageError(f"energy meter {spec.energy.meter!r} reads this machine, not device {device_name!r}; "
                         "for an ssh device use meter: external (a log of the device's power) or none")
    if timed.path is None:
        raise UsageError(f"{timed.artifact}: an in-memory model cannot run in a separate runner process")
    job = {**device_job(timed.runtime, timed.options), "threads": spec.threads,
           "protocol": {"warmup_s": spec.warmup_s, "min_duration_s": spec.min_duration_s,
                        "min_iters": spec.min_iters, "max_duration_s": spec.max_duration_s}}
    rec = recorder_for(spec.energy, base_dir)
    rec.start()
    raw = run_job(device_name, device_cfg, timed.path, model_files(timed.path), job, feeds)
    energy = rec.finish(raw["started"], raw["ended"], len(raw["samples_ms"]))
    if remote:
        device = device_from(device_name, "ssh", device_cfg.host, raw["cpu"], raw["gpus"])
    else:
        device = local_device(device_name)
    return _build(timed, raw, spec, device, energy, "remote" if remote else "subprocess", _batch(feeds))
