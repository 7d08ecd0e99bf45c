"""Gradual sparsity schedule (Zhu & Gupta, "To prune, or not to prune", 2017): sparsity rises
from `initial` to `final` over `steps` pruning steps along a polynomial, fast at first and
slowly at the end, when there are fewer redundant weights left. Pure Python."""

from __future__ import annotations


def polynomial(initial: float, final: float, steps: int, power: float = 3.0) -> list[float]:
    """Target sparsity after each of `steps` steps: s_k = final + (initial - final)(1 - k/steps)^power,
    k = 1..steps; the last value is exactly `final`."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (0.0 <= initial <= final < 1.0):
        raise ValueError(f"need 0 <= initial <= final < 1, got initial {initial}, final {final}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    out = [final + (initial - final) * (1.0 - k / steps) ** power for k in range(1, steps + 1)]
    out[-1] = final
    return out
