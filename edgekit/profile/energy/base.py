"""The meter plugin contract and the arithmetic every meter shares: a background sampler that
turns readings into a timestamped trace, and the energy over a time window of that trace.

A meter is either a `counter` (cumulative joules: RAPL, NVML), `sampled` power in watts (Jetson
rails, an external meter's log) or a `model` (an estimate, labelled as such). Windows are in
epoch seconds so that traces from another process or an external logger line up with the timed
loop's `started`/`ended`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgekit.profile.schema import MeterInfo, Provenance

Kind = Literal["counter", "sampled", "model"]
PROVENANCE: dict[str, Provenance] = {"counter": "measured_counter", "sampled": "measured_sampled",
                                     "model": "estimated_model"}


class MeterError(Exception):
    """This meter cannot read on this machine; the message says why and, where one exists, the fix."""


@dataclass
class Trace:
    """Timestamps (epoch s) and values: cumulative joules for counters, watts otherwise."""

    kind: Kind
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def covers(self, t0: float, t1: float) -> bool:
        return len(self.t) >= 2 and self.t[0] <= t0 and self.t[-1] >= t1

    def joules(self, t0: float, t1: float) -> float:
        """Energy in [t0, t1]: the counter's difference (linearly interpolated between reads)
        or the trapezoid integral of the power curve."""
        if not self.covers(t0, t1):
            span = f"[{self.t[0]:.3f}, {self.t[-1]:.3f}]" if self.t else "nothing"
            raise MeterError(f"the meter's trace covers {span}, not the window [{t0:.3f}, {t1:.3f}]")
        t = np.asarray(self.t, dtype=np.float64)
        v = np.asarray(self.v, dtype=np.float64)
        if self.kind == "counter":
            return float(np.interp(t1, t, v) - np.interp(t0, t, v))
        inside = (t > t0) & (t < t1)
        grid = np.concatenate([[t0], t[inside], [t1]])
        w = np.interp(grid, t, v)
        return float(np.sum((w[1:] + w[:-1]) * np.diff(grid)) / 2.0)  # np.trapezoid needs NumPy >= 2


class Meter:
    """A live meter: `read()` returns cumulative joules (counter) or watts (sampled/model).
    Subclasses raise MeterError from __init__ when the hardware or permission is missing."""

    info: MeterInfo

    def read(self) -> float:
        raise NotImplementedError

    def start(self, period_s: float) -> None:
        self.trace = Trace(self.info.kind)
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, args=(period_s,), daemon=True)
        self._thread.start()

    def stop(self) -> Trace:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.trace

    def _sample(self) -> None:
        v = self.read()
        self.trace.t.append(time.time())
        self.trace.v.append(v)

    def _loop(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self._sample()
