"""Energy meters as plugins, and how a meter is chosen for the recipe's `profile.energy`
settings (their schema, `EnergySpec`, is a recipe section).

`meter: none` (the default) records provenance `unavailable` and says so; `auto` tries the
measured meters (NVML, Jetson, RAPL) and, when none works, records `unavailable` with every
reason — it never falls back to the estimate. Naming a meter that cannot read here is an error
(exit 4) with the reason and the fix."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgekit.errors import BackendUnavailable
from edgekit.recipe.sections import EnergySpec

# name -> "module:class"; imported only when that meter is asked for
PLUGINS = {
    "rapl": "edgekit.profile.energy.rapl:RaplMeter",
    "nvml": "edgekit.profile.energy.nvml:NvmlMeter",
    "jetson": "edgekit.profile.energy.jetson:JetsonMeter",
    "external": "edgekit.profile.energy.external:ExternalMeter",
    "estimate": "edgekit.profile.energy.estimate:EstimateMeter",
}
AUTO_ORDER = ("nvml", "jetson", "rapl")


def _construct(name: str, spec: EnergySpec, base_dir: Path):  # -> Meter
    module, _, cls = PLUGINS[name].partition(":")
    meter_cls = getattr(importlib.import_module(module), cls)
    if name == "rapl":
        return meter_cls(spec.sysfs_root)
    if name == "nvml":
        return meter_cls(spec.gpu_index)
    if name == "jetson":
        return meter_cls(spec.sysfs_root, spec.rail)
    if name == "external":
        return meter_cls(str((base_dir / spec.csv).resolve()))
    return meter_cls(spec.tdp_w)


def open_meter(spec: EnergySpec, base_dir: Path = Path(".")):  # -> tuple[Meter | None, str]
    """The meter to use and, when there is none, why."""
    from edgekit.profile.energy.base import MeterError

    if spec.meter == "none":
        return None, "no meter requested (profile.energy.meter: none)"
    if spec.meter == "auto":
        reasons = []
        for name in AUTO_ORDER:
            try:
                return _construct(name, spec, base_dir), ""
            except MeterError as exc:
                reasons.append(str(exc))
        return None, "auto: no energy meter on this machine: " + "; ".join(reasons)
    try:
        return _construct(spec.meter, spec, base_dir), ""
    except MeterError as exc:
        raise BackendUnavailable(f"profile.energy.meter {spec.meter!r} cannot read here: {exc}") from None
