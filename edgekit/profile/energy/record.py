"""One energy measurement around one latency run: idle window first, then the timed window
reported by the timed loop, then gross and idle-subtracted net joules per inference."""

from __future__ import annotations

import time
from typing import Any, Optional

from edgekit.errors import BackendUnavailable
from edgekit.profile.energy.base import PROVENANCE, MeterError
from edgekit.profile.schema import Energy


class EnergyRecorder:
    """`named`: the recipe or command line named this meter (not `auto`), so a meter that
    cannot read is an error (exit 4), not a quiet `unavailable`."""

    def __init__(self, meter: Any, reason: str, idle_s: float, period_s: float, named: bool = False) -> None:
        self.meter, self.reason, self.idle_s, self.period_s = meter, reason, idle_s, period_s
        self.named = named
        self.idle: Optional[tuple[float, float]] = None

    def start(self) -> None:
        """Start the meter and sit idle for `idle_s` so the idle power has a window of its own."""
        if self.meter is None:
            return
        self.meter.start(self.period_s)
        if self.idle_s > 0:
            t0 = time.time()
            time.sleep(self.idle_s)
            self.idle = (t0, time.time())

    def finish(self, started: float, ended: float, inferences: int) -> Energy:
        if self.meter is None:
            return Energy(provenance="unavailable", reason=self.reason)
        info = self.meter.info
        try:
            trace = self.meter.stop()
            gross = trace.joules(started, ended)
            idle_w = trace.joules(*self.idle) / (self.idle[1] - self.idle[0]) if self.idle else None
        except MeterError as exc:
            if self.named:
                raise BackendUnavailable(f"profile.energy.meter {info.name!r} cannot read here: {exc}") from None
            return Energy(provenance="unavailable", reason=f"{info.name}: {exc}", meter=info)
        window = ended - started
        net = (gross - idle_w * window) / inferences if idle_w is not None else None
        reason = "" if info.kind != "model" else f"an estimate, not a measurement ({info.source})"
        if idle_w is None:
            reason = (reason + "; " if reason else "") + "no idle window (idle_s: 0): no net figure"
        return Energy(provenance=PROVENANCE[info.kind], reason=reason, meter=info, idle_w=idle_w,
                      idle_s=(self.idle[1] - self.idle[0]) if self.idle else None, window_s=window,
                      inferences=inferences, avg_power_w=gross / window if window > 0 else None, gross_j=gross,
                      gross_j_per_inference=gross / inferences, net_j_per_inference=net)
