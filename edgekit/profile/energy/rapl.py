"""Intel/AMD RAPL through the powercap sysfs: package-scope cumulative energy counters.

Reads every top-level zone `intel-rapl:N/energy_uj` (one per package; sub-zones like
`intel-rapl:0:0` are parts of a package and would double count) and unwraps each counter at its
`max_energy_range_uj`. The sampler reads far more often than any counter can wrap (hours at
hundreds of watts), so at most one wrap happens between two reads."""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.profile.energy.base import Meter, MeterError
from edgekit.profile.schema import MeterInfo

PERMISSION_FIX = ("energy_uj is readable only by root since Linux 5.10 (CVE-2020-8694): run as root, or grant "
                  "read access until reboot with: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj")


def unwrap(prev_raw: int, raw: int, max_range: int) -> int:
    """Energy (µJ) between two raw reads of a counter that wraps to 0 after `max_range`."""
    return raw - prev_raw if raw >= prev_raw else raw + max_range - prev_raw


class RaplMeter(Meter):
    def __init__(self, sysfs_root: str = "/") -> None:
        base = Path(sysfs_root) / "sys/class/powercap"
        zones = sorted(p for p in base.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name))
        if not zones:
            raise MeterError(f"RAPL: no {base}/intel-rapl:N zones (not an Intel/AMD CPU with powercap, "
                             "or /sys/class/powercap is not mounted in this container)")
        self.zones = zones
        self.max = []
        for z in zones:
            try:
                self.max.append(int((z / "max_energy_range_uj").read_text()))
            except (OSError, ValueError) as exc:
                raise MeterError(f"RAPL: cannot read {z}/max_energy_range_uj: {exc}") from None
        self.prev = self._raw()
        self.total_uj = 0
        names = ", ".join(self._name(z) for z in zones)
        self.info = MeterInfo(name="rapl", kind="counter", scope=f"package ({names}); whole CPU, not per process",
                              update_period_s=0.001, resolution="1 uJ counter (hardware energy unit ~15-61 uJ)",
                              needs_root=True, source=str(base))

    @staticmethod
    def _name(zone: Path) -> str:
        try:
            return (zone / "name").read_text().strip()
        except OSError:
            return zone.name

    def _raw(self) -> list[int]:
        raw = []
        for z in self.zones:
            f = z / "energy_uj"
            try:
                raw.append(int(f.read_text()))
            except PermissionError:
                raise MeterError(f"RAPL: permission denied reading {f}; {PERMISSION_FIX}") from None
            except (OSError, ValueError) as exc:
                raise MeterError(f"RAPL: cannot read {f}: {exc}") from None
        return raw

    def read(self) -> float:
        raw = self._raw()
        self.total_uj += sum(unwrap(p, r, m) for p, r, m in zip(self.prev, raw, self.max))
        self.prev = raw
        return self.total_uj / 1e6
