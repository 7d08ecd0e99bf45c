"""Sensitivity scan and accuracy-aware fallback for quantize.int8.

The search is greedy on the scan's order: quantize everything, and while the task metric on the
evaluation set drops more than `accuracy.max_drop`, move the next most sensitive node back to
float and re-quantize (from the same calibration ranges, never recalibrating), until the budget
holds or `max_trials` / `time_budget_s` run out. It stops at the first float set that meets the
budget, so it keeps as much INT8 as that order allows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.artifact.files import write_json
from edgekit.checks import evaluate
from edgekit.errors import AccuracyError, DataError, RecipeError
from edgekit.quantize import sensitivity as sens
from edgekit.runtimes import ort
from edgekit.stages.state import Dataset, ModelState


def _scorer(state: ModelState, data: Dataset, ref: np.ndarray,
            options: Optional[dict[str, Any]] = None) -> tuple[str, Any, Optional[bool]]:
    """(metric name, score(path, data, ref) -> float, higher_is_better) from the recipe."""
    from edgekit.runtimes import open_runner

    acc = state.recipe.accuracy if state.recipe is not None else None
    fn = evaluate.load_evaluator(acc, data) if acc is not None else None
    metric = (acc.evaluator if fn else None) or evaluate.choose_metric(acc.metric if acc else None, data.labels, ref)
    higher = acc.higher_is_better if acc is not None else None

    def score(path: Path, d: Dataset, r: np.ndarray) -> float:
        runner = open_runner(ort.NAME, path, state.threads, **(options or {}))
        try:
            out = np.concatenate([np.asarray(runner.run(s)[0]) for s in d.samples]) if fn is None else r
            return evaluate.value(metric, fn, runner, d, out, r[: len(d)], d.labels, path.name)
        finally:
            runner.close()

    return metric, score, higher


def sensitivity_then_search(state: ModelState, plan: Any, candidates: list[str], excluded: list[str],
                            out: Path, kind: str) -> tuple[list[str], dict[str, Any]]:
    """Scan per-node sensitivity (written to sensitivity.json), then, when accuracy_aware is on,
    search for the float set; returns the nodes left float and what to record."""
    cfg = plan.cfg
    aa = cfg.accuracy_aware
    data = state.evaluation or state.calibration
    if data is None:
        raise DataError(f"{kind}: sensitivity needs data.evaluation (or data.calibration) in the recipe")
    max_drop = state.recipe.accuracy.max_drop if state.recipe is not None else None
    if aa.enabled and (max_drop is None or state.evaluation is None):
        raise RecipeError("accuracy_aware.enabled: needs accuracy.max_drop and data.evaluation in the recipe")
    if (state.workdir.parent / sens.SENSITIVITY_FILE).exists():
        raise RecipeError(f"sensitivity: an earlier stage already scanned sensitivity into {sens.SENSITIVITY_FILE}; "
                          "allowed: one quantize stage with sensitivity or accuracy_aware per recipe")
    t0 = time.perf_counter()
    part = sens.subset(data, aa.samples)
    part_ref = sens.outputs(plan.prepared, part.samples, state.threads)
    metric, score, higher = _scorer(state, part, part_ref, plan.ort_options)
    rows = sens.scan(plan.quantize, plan.prepared, candidates, excluded, part,
                     score if state.evaluation is not None else None, state.threads,
                     state.progress("sensitivity", len(candidates)), plan.ort_options)
    ref_metric = score(plan.prepared, part, part_ref) if state.evaluation is not None else None
    write_json(state.workdir.parent / sens.SENSITIVITY_FILE,
               sens.document(rows, part, metric if ref_metric is not None else None, ref_metric))
    found: dict[str, Any] = {"sensitivity": {"file": sens.SENSITIVITY_FILE, "samples": len(part),
                                             "seconds": round(time.perf_counter() - t0, 3), "nodes": rows}}
    if not aa.enabled:
        plan.quantize(out, excluded)
        return excluded, found

    evald = state.evaluation
    ref = sens.outputs(plan.prepared, evald.samples, state.threads)
    reference = score(plan.prepared, evald, ref)
    order = [r["node"] for r in rows]
    trials: list[dict[str, Any]] = []
    best: Optional[dict[str, Any]] = None
    start = time.perf_counter()
    for k in range(len(order) + 1):
        if len(trials) >= aa.max_trials or time.perf_counter() - start > aa.time_budget_s:
            break
        floats = order[:k]
        plan.quantize(out, excluded + floats)
        value = score(out, evald, ref)
        d = evaluate.drop(metric, reference, value, higher)
        trials.append({"float_nodes": floats, "metric": value, "drop": d,
                       "seconds": round(time.perf_counter() - start, 3)})
        if best is None or d < best["drop"]:
            best = trials[-1]
        if d <= max_drop + 1e-12:
            found["accuracy_aware"] = {"metric": metric, "reference": reference, "final_metric": value,
                                       "final_drop": d, "max_drop": max_drop, "trials": trials}
            return excluded + floats, found
    tried = ", ".join(order[: max(len(t["float_nodes"]) for t in trials)]) or "none"
    raise AccuracyError(
        f"{kind}: accuracy-aware search could not meet accuracy.max_drop {max_drop}: best {metric} drop "
        f"{best['drop']:.4f} after {len(trials)} trials (max_trials {aa.max_trials}, time_budget_s "
        f"{aa.time_budget_s:g}); nodes moved to float: {tried}"
    )
