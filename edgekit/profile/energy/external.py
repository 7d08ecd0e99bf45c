"""An external power meter's log (a wall-plug or USB meter, a lab supply): CSV rows of
`timestamp, watts`, imported after the run and aligned on the run's epoch timestamps.

Timestamps are epoch seconds or ISO 8601 (a naive ISO time is taken as UTC). A header row is
allowed. The log must cover the idle and timed windows; it is the user's clock, so keep it in
sync (NTP) with the machine that runs the model."""

from __future__ import annotations

import csv
import datetime as _dt
from pathlib import Path

from edgekit.profile.energy.base import Meter, MeterError, Trace
from edgekit.profile.schema import MeterInfo


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    t = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def read_csv(path: Path) -> Trace:
    trace = Trace("sampled")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise MeterError(f"external meter: cannot read {path}: {exc}") from None
    for i, row in enumerate(rows, 1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) < 2:
            raise MeterError(f"external meter: {path}:{i}: expected 'timestamp, watts', got {row!r}")
        try:
            t, w = _epoch(row[0]), float(row[1])
        except ValueError:
            if i == 1:  # header
                continue
            raise MeterError(f"external meter: {path}:{i}: expected 'timestamp, watts', got {row!r}") from None
        trace.t.append(t)
        trace.v.append(w)
    if len(trace.t) < 2:
        raise MeterError(f"external meter: {path}: fewer than 2 readings")
    order = sorted(range(len(trace.t)), key=trace.t.__getitem__)
    trace.t, trace.v = [trace.t[j] for j in order], [trace.v[j] for j in order]
    return trace


class ExternalMeter(Meter):
    """Nothing to sample live: `stop()` reads the log (which may be written while the run goes)."""

    def __init__(self, csv_path: str) -> None:
        self.path = Path(csv_path)
        self.info = MeterInfo(name="external", kind="sampled", scope="wall (whatever the meter is plugged into)",
                              update_period_s=None, resolution="as logged", needs_root=False, source=str(self.path))

    def start(self, period_s: float) -> None:
        pass

    def stop(self) -> Trace:
        return read_csv(self.path)
