"""An opt-in estimate, never a fallback: the CPU package power modelled as TDP x whole-machine
CPU utilization (psutil). It is labelled `estimated_model` and says what it assumed."""

from __future__ import annotations

import psutil

from edgekit.profile.energy.base import Meter
from edgekit.profile.schema import MeterInfo


class EstimateMeter(Meter):
    def __init__(self, tdp_w: float) -> None:
        self.tdp_w = tdp_w
        psutil.cpu_percent(interval=None)  # primes the utilization counter
        self.info = MeterInfo(name="estimate", kind="model", scope="model: TDP x CPU utilization",
                              update_period_s=None, resolution="model", needs_root=False,
                              source=f"tdp_w={tdp_w}")

    def read(self) -> float:
        return self.tdp_w * psutil.cpu_percent(interval=None) / 100.0
