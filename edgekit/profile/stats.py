"""Latency statistics over raw samples (pure functions, property-tested)."""

from __future__ import annotations

from typing import Any

import numpy as np


def early_stopping_upper(samples_ms: np.ndarray, percentile: float = 0.90, confidence: float = 0.99) -> float | None:
    """MLPerf-LoadGen-style bound: the smallest order statistic that, with `confidence`, is at
    or above the true `percentile` latency (binomial tail on how many samples can exceed it).
    None when there are too few samples for any bound (64 at p90/99%)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = len(x)
    # P(#samples <= true quantile q is >= k) for k = index+1: choose the smallest index k-1 with
    # P(Binom(n, p) < k) >= confidence, i.e. x[k-1] exceeds the quantile with that confidence.
    ks = np.arange(1, n + 1)
    ok = binom.cdf(ks - 1, n, percentile) >= confidence
    if not ok.any():
        return None
    return float(x[int(np.argmax(ok))])


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, Any]:
    x = np.asarray(samples_ms, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no samples")
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return {
        "n": int(len(x)),
        "min_ms": float(x.min()),
        "median_ms": float(med),
        "mean_ms": mean,
        "p90_ms": float(np.percentile(x, 90)),
        "p95_ms": float(np.percentile(x, 95)),
        "p99_ms": float(np.percentile(x, 99)),
        "max_ms": float(x.max()),
        "stdev_ms": std,
        "cv": std / mean if mean > 0 else None,  # None, not NaN: profile.json is strict JSON
        "iqr_ms": float(q3 - q1),
        "p90_upper_bound_ms": early_stopping_upper(x, 0.90),
        "throughput_per_s": 1000.0 / mean if mean > 0 else None,
    }
