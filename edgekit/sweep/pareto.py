"""Pure choice functions: which trials no other trial beats on both latency and accuracy (the
Pareto front), which meet the objective's constraints, and which one to ship. No I/O, so the
properties are checked by hypothesis (tests/test_sweep_pareto.py)."""

from __future__ import annotations

from typing import Any, Optional, Sequence


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """`a` = (latency, quality): lower latency and higher quality are better."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, fastest first (equal points all stay: two recipes
    that measure the same are both worth showing)."""
    keep = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1], i))


def quality(row: dict[str, Any]) -> float:
    """Higher is better whatever the metric: the negated drop (a drop is >= 0 when worse)."""
    return -float(row["drop"]) if row.get("drop") is not None else float(row.get("fidelity") or 0.0)


def feasible(row: dict[str, Any], objective: Any) -> bool:
    if objective.accuracy_drop_max is not None:
        if row.get("drop") is None or row["drop"] > objective.accuracy_drop_max + 1e-12:
            return False
    if objective.fidelity_min is not None:
        if row.get("fidelity") is None or row["fidelity"] < objective.fidelity_min - 1e-12:
            return False
    return row.get(objective.minimize) is not None


def choose(rows: Sequence[dict[str, Any]], objective: Any) -> Optional[int]:
    """The feasible row with the smallest objective; ties go to the better quality, then to the
    earlier row, so the same results always choose the same recipe."""
    ok = [i for i, r in enumerate(rows) if feasible(r, objective)]
    if not ok:
        return None
    return min(ok, key=lambda i: (rows[i][objective.minimize], -quality(rows[i]), i))
