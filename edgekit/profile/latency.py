"""The latency protocol in process: the timed loop of the target-side runner
(`edgekit.runtimes.device_side.timed_loop`) plus the statistics, keeping raw samples and
first-inference time apart."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgekit.profile.stats import summarize
from edgekit.runtimes.device_side import timed_loop


def measure(
    run: Callable[[], Any],
    warmup_s: float,
    min_duration_s: float,
    min_iters: int,
    max_duration_s: float,
    tick: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    raw = timed_loop(run, warmup_s, min_duration_s, min_iters, max_duration_s, tick)
    stats = summarize(np.array(raw["samples_ms"]))
    stats.update(raw)
    return stats
