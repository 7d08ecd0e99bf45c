"""The latency protocol: time-based warm-up, then run until both a minimum duration and a
minimum count are met (with a hard cap), keeping raw samples and first-inference time apart."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from edgekit.profile.stats import summarize


def measure(
    run: Callable[[], Any],
    warmup_s: float,
    min_duration_s: float,
    min_iters: int,
    max_duration_s: float,
    tick: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - t0) * 1000.0
    end_warm = time.perf_counter() + warmup_s
    warm = 0
    while time.perf_counter() < end_warm:
        run()
        warm += 1
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        s = time.perf_counter()
        run()
        e = time.perf_counter()
        samples.append((e - s) * 1000.0)
        tick(1)
        elapsed = e - start
        if (len(samples) >= min_iters and elapsed >= min_duration_s) or elapsed >= max_duration_s:
            break
    stats = summarize(np.array(samples))
    stats.update(first_inference_ms=first_ms, warmup_iters=warm,
                 capped=bool(len(samples) < min_iters or (time.perf_counter() - start) < min_duration_s),
                 samples_ms=[round(v, 5) for v in samples])
    return stats
