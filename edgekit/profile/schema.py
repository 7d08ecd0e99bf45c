"""The versioned `profile.json` schema (schema: 1), shared by `compress`, `edgekit profile`, the
gate and the report.

A document holds one `Measurement` per key `<artifact>/<runtime>`. Each measurement carries
everything needed to decide whether two measurements may be compared at all (model sha256,
runtime, device fingerprint: see `baseline_key`), the latency statistics of
`edgekit.profile.stats.summarize` flattened at the top level (so `m.p90_ms` and
`m.p90_upper_bound_ms` read directly), the raw samples, and an `energy` block that always states
its provenance. Pydantic with `extra="forbid"`, so a profile written by a newer, different schema
fails loudly instead of being half-read."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

from pydantic import ConfigDict, Field, ValidationError

from edgekit.core.strict import Strict
from edgekit.errors import UsageError

SCHEMA_VERSION = 1
Provenance = Literal["measured_counter", "measured_sampled", "estimated_model", "unavailable"]


class ModelIdentity(Strict):
    artifact: str  # artifact name in the manifest ("fp32", "int8") or the file stem
    path: str  # as given to the runner (relative to the artifact dir when profiled from one)
    format: str  # onnx | openvino | tensorrt | pytorch
    precision: Optional[str] = None
    sha256: str  # of the model file (for pytorch: of the entrypoint reference + state dict)


class Device(Strict):
    name: str  # "local" or the devices.yaml entry
    kind: Literal["local", "ssh"] = "local"
    host: Optional[str] = None
    cpu: str  # CPU model string
    cpu_class: str = ""  # edgekit.runtimes.cpu_classes class (x86-avx2, x86-vnni, ...): what decides INT8 speed and numerics
    cpu_flags: list[str] = []  # the ISA flags that change kernels (avx512_vnni, amx_int8, ...)
    gpus: list[str] = []
    fingerprint: str  # what baselines key on: see device_fingerprint


class MeterInfo(Strict):
    """What a meter can and cannot see, so a reader can judge the joules."""

    name: str  # rapl | nvml | jetson | external | estimate
    kind: Literal["counter", "sampled", "model"]
    scope: str  # package | gpu | board | rail | wall | model
    update_period_s: Optional[float] = None
    resolution: str = ""
    needs_root: bool = False
    source: str = ""  # sysfs path, GPU index, CSV file ...


class Energy(Strict):
    provenance: Provenance
    reason: str = ""  # why unavailable, or what an estimate assumed
    meter: Optional[MeterInfo] = None
    idle_w: Optional[float] = None  # measured before the run, same meter
    idle_s: Optional[float] = None
    window_s: Optional[float] = None  # the timed window the joules cover
    inferences: Optional[int] = None
    avg_power_w: Optional[float] = None  # gross, over the window
    gross_j: Optional[float] = None  # total over the window
    gross_j_per_inference: Optional[float] = None
    net_j_per_inference: Optional[float] = None  # gross minus idle_w x window, per inference


class Protocol(Strict):
    warmup_s: float
    min_duration_s: float
    min_iters: int
    max_duration_s: float
    warmup_iters: int
    capped: bool  # max_duration_s hit before min_iters/min_duration_s: statistics are weaker
    isolation: Literal["in_process", "subprocess", "remote"]  # who owns peak_rss_mb


class LatencyStats(Strict):
    """Exactly the keys of `edgekit.profile.stats.summarize`."""

    n: int
    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    stdev_ms: float
    cv: Optional[float]  # None when the mean is 0
    iqr_ms: float
    p90_upper_bound_ms: Optional[float]  # MLPerf early stopping at 99%; None below 64 samples
    throughput_per_s: Optional[float]


class Measurement(LatencyStats):
    model: ModelIdentity
    runtime: str  # pytorch | onnxruntime | openvino | tensorrt
    backend: dict[str, Any] = {}  # the runner's details: providers, precision hint, versions
    device: Device
    threads: int
    batch: int
    protocol: Protocol
    first_inference_ms: float
    load_s: Optional[float] = None  # None: not measured (a torch module loaded before the runner)
    peak_rss_mb: Optional[float] = None
    started: str  # ISO time the timed window began (external meters align on it)
    samples_ms: list[float] = []
    energy: Energy = Energy(provenance="unavailable", reason="no meter requested (energy.meter: none)")


class Profile(Strict):
    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    edgekit_version: str
    created: str
    measurements: dict[str, Measurement] = {}

    model_config = ConfigDict(**Strict.model_config, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def for_manifest(self) -> dict[str, dict[str, Any]]:
        """key -> measurement without raw samples (they stay in profile.json)."""
        return {k: m.model_dump(mode="json", exclude={"samples_ms"}) for k, m in self.measurements.items()}


class BaselineKey(NamedTuple):
    model_sha256: str
    runtime: str
    device: str


def baseline_key(entry: Measurement) -> BaselineKey:
    """Two measurements are comparable only when the same model file ran on the same runtime on
    the same kind of device; the gate refuses a baseline whose key differs."""
    return BaselineKey(entry.model.sha256, entry.runtime, entry.device.fingerprint)


def key_of(artifact: str, runtime: str) -> str:
    return f"{artifact}/{runtime}"


def device_fingerprint(cpu: str, flags: list[str], gpus: list[str], cpu_class: str = "") -> str:
    """CPU class + model + kernel-relevant flags, or the GPU names: what makes latencies
    comparable. Core count and memory are left out on purpose (threads are recorded per
    measurement)."""
    parts = [f"class={cpu_class}"] if cpu_class else []
    parts += [f"cpu={cpu}", "flags=" + ",".join(sorted(flags))]
    if gpus:
        parts.append("gpu=" + ",".join(gpus))
    return ";".join(parts)


def local_device(name: str = "local") -> Device:
    from edgekit.artifact.environment import cpu_info, gpu_info

    return device_from(name, "local", None, cpu_info(), [g["name"] for g in gpu_info()])


def device_from(name: str, kind: str, host: Optional[str], cpu: dict[str, Any], gpus: list[str]) -> Device:
    """A Device from a `cpu_info()` reply (this machine's or an ssh device's)."""
    from edgekit.runtimes.cpu_classes import describe

    flags = sorted(f for f, on in cpu["flags"].items() if on)
    cls = describe(cpu)
    return Device(name=name, kind=kind, host=host, cpu=cpu["model"], cpu_class=cls, cpu_flags=flags, gpus=gpus,
                  fingerprint=device_fingerprint(cpu["model"], flags, gpus, cls))


def new_profile(measurements: Optional[dict[str, Measurement]] = None) -> Profile:
    import edgekit

    return Profile(edgekit_version=edgekit.__version__,
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   measurements=measurements or {})


def load_profile(path: Path) -> Profile:
    """Read a profile.json, or an artifact dir's profile.json; one-line errors on anything else."""
    p = Path(path)
    if p.is_dir():
        p = p / "profile.json"
    if not p.is_file():
        raise UsageError(f"{p}: profile file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise UsageError(f"{p}: profile schema {got!r} is not supported; allowed: {SCHEMA_VERSION}")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise UsageError(f"{p}: {where}: {e['msg']}") from None
