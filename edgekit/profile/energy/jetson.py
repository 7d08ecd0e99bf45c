"""NVIDIA Jetson boards: the INA3221 power monitor's rails in sysfs. `VDD_IN` is the whole
board's input, so it is the default rail (summing rails would double count).

Two layouts exist: hwmon (L4T 34+, Orin: `inN_label`, `inN_input` in mV, `currN_input` in mA)
and the older iio driver (L4T 32, Xavier/Nano: `rail_name_N`, `in_powerN_input` in mW)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgekit.profile.energy.base import Meter, MeterError
from edgekit.profile.schema import MeterInfo


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise MeterError(f"Jetson INA3221: cannot read {path}: {exc}") from None


def find_rail(sysfs_root: str, rail: str) -> tuple[Callable[[], float], str]:
    """A function returning the rail's watts, and the sysfs directory it reads."""
    root = Path(sysfs_root) / "sys/bus/i2c/drivers"
    for label in sorted(root.glob("ina3221/*/hwmon/hwmon*/in*_label")):
        if label.read_text().strip() == rail:
            n = label.name[2:-len("_label")]
            volt, curr = label.parent / f"in{n}_input", label.parent / f"curr{n}_input"
            return (lambda: _read_int(volt) * _read_int(curr) / 1e6), str(label.parent)
    for name in sorted(root.glob("ina3221x/*/iio:device*/rail_name_*")):
        if name.read_text().strip() == rail:
            power = name.parent / f"in_power{name.name.rsplit('_', 1)[1]}_input"
            return (lambda: _read_int(power) / 1e3), str(name.parent)
    raise MeterError(f"Jetson INA3221: no rail {rail!r} under {root}/ina3221*/ (not a Jetson board, or another rail "
                     "name: see the *_label / rail_name_* files there)")


class JetsonMeter(Meter):
    def __init__(self, sysfs_root: str = "/", rail: str = "VDD_IN") -> None:
        self.read_w, where = find_rail(sysfs_root, rail)
        self.info = MeterInfo(name="jetson", kind="sampled", scope="board" if rail == "VDD_IN" else f"rail {rail}",
                              update_period_s=None, resolution="1 mW (mV x mA)", needs_root=False, source=where)

    def read(self) -> float:
        return self.read_w()
