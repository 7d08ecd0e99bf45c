"""Task metrics for the reference and each artifact, and the recipe's accuracy budget."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from edgekit.checks import metrics
from edgekit.errors import AccuracyError, DataError, RecipeError
from edgekit.stages.state import Dataset

HIGHER_IS_BETTER = {"top1": True, "token_top1": True, "cosine_fidelity": True, "mse": False}


def choose_metric(requested: Optional[str], labels: Optional[np.ndarray], ref: np.ndarray) -> str:
    if requested in ("top1", "token_top1") and labels is None:
        raise RecipeError(f"accuracy.metric: {requested} needs labels in data.evaluation; this source has none")
    dense = labels is not None and metrics.looks_like_token_logits(ref, labels)
    if requested in ("top1", "token_top1") and (requested == "token_top1") != dense:
        want = "token_top1" if dense else "top1"
        raise RecipeError(f"accuracy.metric: {requested} does not fit outputs {list(ref.shape)} with labels "
                          f"{list(labels.shape)}; use {want} (token_top1 is for (N, tokens, classes) outputs "
                          "with one label per token)")
    if requested:
        return requested
    if dense:
        return "token_top1"
    return "top1" if labels is not None and metrics.looks_like_logits(ref) else "cosine_fidelity"


def score(metric: str, out: np.ndarray, ref: np.ndarray, labels: Optional[np.ndarray]) -> float:
    if metric == "top1":
        return metrics.top1(out, labels)
    if metric == "token_top1":
        return metrics.token_top1(out, labels)
    if metric == "cosine_fidelity":
        return float(metrics.cosine_per_sample(ref, out).mean())
    return metrics.mse(ref, out)


def drop(metric: str, reference: float, value: float, higher: Optional[bool] = None) -> float:
    """How much worse `value` is than the reference, in the metric's own units (>= 0 is worse).
    `higher` gives the direction of a user evaluator's score; built-in metrics know theirs."""
    up = HIGHER_IS_BETTER[metric] if metric in HIGHER_IS_BETTER else (True if higher is None else higher)
    return reference - value if up else value - reference


def check(metric: str, reference: float, value: float, max_drop: Optional[float], where: str,
          higher: Optional[bool] = None) -> None:
    if max_drop is None:
        return
    d = drop(metric, reference, value, higher)
    if d > max_drop + 1e-12:
        raise AccuracyError(
            f"accuracy: {where}: {metric} {value:.4f} vs reference {reference:.4f} is a drop of "
            f"{d:.4f}, above accuracy.max_drop {max_drop}"
        )


def summary(metric: str, reference: float, value: float, higher: Optional[bool] = None) -> dict[str, Any]:
    return {"metric": metric, "value": value, "reference": reference, "drop": drop(metric, reference, value, higher)}


def load_evaluator(spec: Any, data: Optional[Dataset]) -> Optional[Callable[[Any, Dataset], Any]]:
    """The recipe's `accuracy.evaluator` entrypoint, or None when it uses a built-in metric."""
    if not spec.evaluator:
        return None
    if data is None:
        raise RecipeError("accuracy.evaluator: needs data.evaluation, which the recipe does not set")
    from edgekit.sources.entrypoint import import_entrypoint

    fn = import_entrypoint(spec.evaluator, "accuracy.evaluator")
    if not callable(fn):
        raise RecipeError(f"accuracy.evaluator: {spec.evaluator!r} is a {type(fn).__name__}, not a function")
    return fn


def user_score(fn: Callable[[Any, Dataset], Any], runner: Any, data: Dataset, name: str, where: str) -> float:
    """Call a user evaluator; anything but a finite number is an error naming the entrypoint."""
    value = fn(runner, data)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise DataError(f"accuracy.evaluator: {name} returned {value!r} for {where}; it must return a finite float")
    return float(value)


def value(metric: str, fn: Optional[Callable[[Any, Dataset], Any]], runner: Any, data: Optional[Dataset],
          out: np.ndarray, ref: np.ndarray, labels: Optional[np.ndarray], where: str) -> float:
    """The run's accuracy for one model: the user evaluator when there is one, else `score`."""
    if fn is not None and data is not None:
        return user_score(fn, runner, data, metric, where)
    return score(metric, out, ref, labels)
