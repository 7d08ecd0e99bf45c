"""Task metrics for the reference and each artifact, and the recipe's accuracy budget."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgekit import metrics
from edgekit.errors import AccuracyError, RecipeError

HIGHER_IS_BETTER = {"top1": True, "cosine_fidelity": True, "mse": False}


def choose_metric(requested: Optional[str], labels: Optional[np.ndarray], ref: np.ndarray) -> str:
    if requested == "top1" and labels is None:
        raise RecipeError("accuracy.metric: top1 needs labels in data.evaluation; this source has none")
    if requested:
        return requested
    return "top1" if labels is not None and metrics.looks_like_logits(ref) else "cosine_fidelity"


def score(metric: str, out: np.ndarray, ref: np.ndarray, labels: Optional[np.ndarray]) -> float:
    if metric == "top1":
        return metrics.top1(out, labels)
    if metric == "cosine_fidelity":
        return float(metrics.cosine_per_sample(ref, out).mean())
    return metrics.mse(ref, out)


def drop(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than the reference, in the metric's own units (>= 0 is worse)."""
    return reference - value if HIGHER_IS_BETTER[metric] else value - reference


def check(metric: str, reference: float, value: float, max_drop: Optional[float], where: str) -> None:
    if max_drop is None:
        return
    d = drop(metric, reference, value)
    if d > max_drop + 1e-12:
        raise AccuracyError(
            f"accuracy: {where}: {metric} {value:.4f} vs reference {reference:.4f} is a drop of "
            f"{d:.4f}, above accuracy.max_drop {max_drop}"
        )


def summary(metric: str, reference: float, value: float) -> dict[str, Any]:
    return {"metric": metric, "value": value, "reference": reference, "drop": drop(metric, reference, value)}
