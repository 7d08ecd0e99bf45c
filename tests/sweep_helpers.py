"""Shared by the sweep tests that run Ray: a tiny real model (the custom-model example's MLP,
trained in a second) as the base recipe, and the check that no timing overlapped another task."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, fast_profile


def base_recipe(d: Path) -> Path:
    data = fast_profile(yaml.safe_load((ROOT / "examples" / "custom_model" / "recipe.yaml").read_text()))
    data["verify"]["samples"] = 32
    p = d / "base.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def write_sweep(d: Path, **over: Any) -> Path:
    base_recipe(d)
    data = {"sweep": 1, "name": "tiny", "base": "base.yaml",
            "vary": {"stages[1].activations.calibration": ["minmax", "percentile"]},
            "objective": {"minimize": "latency_p90_ms", "accuracy_drop_max": 0.02}, **over}
    p = d / "sweep.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def worker_path(monkeypatch) -> None:
    """Ray workers are fresh processes: they import the example model through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def overlaps(tasks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs (timing, other task) that ran on one node at the same time."""
    out = []
    for t in tasks:
        if t["kind"] != "timing":
            continue
        for o in tasks:
            if o is not t and o["node"] == t["node"] and o["started"] < t["ended"] and t["started"] < o["ended"]:
                out.append((t, o))
    return out
