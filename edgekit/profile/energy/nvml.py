"""NVIDIA GPUs through NVML's total energy counter (millijoules since the driver loaded; Volta
and newer). Power readings would be 1 s averages on Ampere+, so the counter is what we use."""

from __future__ import annotations

from typing import Any

from edgekit.core.backends import require
from edgekit.errors import BackendUnavailable
from edgekit.profile.energy.base import Meter, MeterError
from edgekit.profile.schema import MeterInfo


class NvmlMeter(Meter):
    def __init__(self, gpu_index: int = 0) -> None:
        try:
            self.nvml: Any = require("pynvml", extra="gpu", why="NVML energy meter")
        except BackendUnavailable as exc:
            raise MeterError(str(exc)) from None
        try:
            self.nvml.nvmlInit()
            count = self.nvml.nvmlDeviceGetCount()
            if gpu_index >= count:
                raise MeterError(f"NVML: gpu_index {gpu_index} but {count} GPU(s) present")
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(gpu_index)
            name = self.nvml.nvmlDeviceGetName(self.handle)
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except self.nvml.NVMLError as exc:
            raise MeterError(f"NVML: {exc} (no NVIDIA driver/GPU, or a pre-Volta GPU without an energy counter)") from None
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.info = MeterInfo(name="nvml", kind="counter", scope=f"gpu {gpu_index} ({name}); whole board, not per process",
                              update_period_s=None, resolution="1 mJ counter", needs_root=False,
                              source=f"nvmlDeviceGetTotalEnergyConsumption({gpu_index})")

    def read(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0
