"""The sweep examples run end to end from the repository root, as the README says."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.sweep_helpers import worker_path

pytest.importorskip("ray")


@pytest.mark.slow
def test_sweep_digits_example_runs_and_a_second_run_starts_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    worker_path(monkeypatch)
    result = cli("sweep", "examples/sweep_digits.yaml", "--out", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "sweep-digits" / "sweep.json").read_text())
    assert len(s["trials"]) == 6  # 3 calibrations x 2 runtimes
    seen = set()
    for t in s["trials"]:
        assert t["device"] == "local" and t["cpu_class"] and t["status"] == "ok", t.get("error")
        (row,) = t["results"]
        assert row["runtime"] == t["settings"]["targets"][0]
        assert row["metric"] == "top1" and 0.5 < row["value"] <= 1.0
        assert row["latency_p90_ms"] > 0 and row["latency_n"] >= 64
        seen.add((t["settings"]["stages[1].activations.calibration"], row["runtime"]))
    assert len(seen) == 6
    chosen = s["chosen"]["local"]
    assert chosen is not None and chosen["drop"] <= 0.01
    assert (tmp_path / "sweep-digits" / chosen["recipe"]).is_file()
    assert "(6 trials run, 0 from cache)" in result.output

    again = cli("sweep", "examples/sweep_digits.yaml", "--out", tmp_path, "--quiet")
    assert again.exit_code == 0, again.output
    assert "(0 trials run, 6 from cache)" in again.output
    assert json.loads((tmp_path / "sweep-digits" / "sweep.json").read_text())["tasks"] == []


def test_sweep_examples_validate():
    from edgekit.sweep.search import grid
    from edgekit.sweep.spec import build_recipe, load_sweep

    for name, size, refused in (("sweep_digits.yaml", 6, 0), ("sweep_minilm.yaml", 16, 4), ("sweep_smollm2.yaml", 5, 0)):
        s = load_sweep(ROOT / "examples" / name)
        points = grid(s.spec.vary)
        assert len(points) == size
        assert sum(build_recipe(s, p).error is not None for p in points) == refused
