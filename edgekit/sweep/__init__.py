"""`edgekit sweep`: many recipes (a base recipe with settings varied) × devices, run as Ray
tasks, with the Pareto front and the chosen recipe per device. Ray and Optuna are imported only
when a sweep runs (the `sweep` extra)."""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """See `edgekit.sweep.driver.run`."""
    from edgekit.sweep.driver import run as _run

    return _run(*args, **kwargs)
