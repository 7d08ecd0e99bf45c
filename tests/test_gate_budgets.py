"""Budgets from `gates:` against a real compress output (the session's digits run): limits set
from what was measured so each verdict is known, exit codes, JUnit XML and the Markdown summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import RECIPES, write_recipe


def recipe_with(tmp_path: Path, gates: dict) -> Path:
    data = yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())
    data["gates"] = gates
    return write_recipe(tmp_path, data)


@pytest.fixture(scope="module")
def measured(digits_run) -> dict:
    prof = json.loads((digits_run.out_dir / "profile.json").read_text())["measurements"]
    return {"profile": prof, "manifest": digits_run.manifest}


def test_budgets_pass_with_room_and_fail_when_tight(cli, digits_run, measured, tmp_path: Path) -> None:
    m = measured["profile"]["int8/onnxruntime"]
    bound = m["p90_upper_bound_ms"]
    assert bound is not None and bound >= m["p90_ms"]
    size = next(a["bytes"] for a in measured["manifest"]["artifacts"] if a["name"] == "int8") / 1e6
    roomy = recipe_with(tmp_path, {"latency_p90_ms": bound * 10, "size_mb": size * 2, "fidelity_min": 0.9,
                                   "accuracy_drop_max": 0.05})
    r = cli("gate", digits_run.out_dir, "-r", roomy, "--artifact", "int8/onnxruntime")
    assert r.exit_code == 0, r.output
    assert "gate passed" in r.output

    # between the sample p90 and the early-stopping bound: the bound is what is compared, so it fails
    tight = recipe_with(tmp_path, {"latency_p90_ms": (m["p90_ms"] + bound) / 2 if bound > m["p90_ms"] else bound * 0.99,
                                   "size_mb": size / 2})
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    r = cli("gate", digits_run.out_dir, "-r", tight, "--artifact", "int8/onnxruntime", "--junit", junit,
            "--summary", summary)
    assert r.exit_code == 1, r.output
    assert "gate FAILED" in r.output and "p90 upper bound" in r.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2" and suite.get("tests") == "2"
    names = {c.get("name") for c in suite.iter("testcase")}
    assert names == {"latency_p90_ms int8/onnxruntime", "size_mb int8"}
    md = summary.read_text()
    assert md.startswith("### edgekit gate: gate FAILED") and md.count("❌ fail") == 2


def test_every_artifact_is_gated_by_default_and_reference_never(cli, digits_run, tmp_path: Path) -> None:
    r = cli("gate", digits_run.out_dir, "-r", recipe_with(tmp_path, {"latency_p99_ms": 1e6, "peak_rss_mb": 1e6}))
    assert r.exit_code == 0, r.output
    for key in ("fp32/onnxruntime", "fp32/openvino", "int8/onnxruntime", "int8/openvino"):
        assert key in r.output
    assert "reference/pytorch" not in r.output


def test_energy_budget_without_a_meter_exits_4_after_the_table(cli, digits_run, tmp_path: Path) -> None:
    r = cli("gate", digits_run.out_dir, "-r", recipe_with(tmp_path, {"energy_mj_per_inference": 1.0}))
    assert r.exit_code == 4, r.output
    assert "unavailable" in r.output and "energy unavailable" in r.output


def test_budgets_default_to_the_artifacts_own_recipe(cli, digits_run) -> None:
    r = cli("gate", digits_run.out_dir)
    assert "budget: latency_p90_ms" in r.output and "budget: size_mb" in r.output
    assert r.exit_code in (0, 1)


def test_usage_errors_exit_2(cli, digits_run, tmp_path: Path) -> None:
    r = cli("gate", digits_run.out_dir, "--artifact", "int4")
    assert r.exit_code == 2 and "--artifact 'int4' is not in the artifact; allowed:" in r.output
    empty = recipe_with(tmp_path, {})
    r = cli("gate", "--profile", digits_run.out_dir / "profile.json", "-r", empty)
    assert r.exit_code == 2 and "nothing to gate" in r.output
    r = cli("gate", "--profile", digits_run.out_dir / "profile.json", "-r", recipe_with(tmp_path, {"size_mb": 1}))
    assert r.exit_code == 2 and "gates.size_mb needs the artifact's manifest" in r.output
    r = cli("gate", tmp_path)
    assert r.exit_code == 2 and "not an edgekit artifact" in r.output


def test_too_few_samples_for_the_p90_bound_is_inconclusive(cli, digits_run, tmp_path: Path) -> None:
    data = json.loads((digits_run.out_dir / "profile.json").read_text())
    m = data["measurements"]["int8/onnxruntime"]
    from edgekit.profile.stats import summarize

    m.update(summarize(m["samples_ms"][:40]), samples_ms=m["samples_ms"][:40])
    data["measurements"] = {"int8/onnxruntime": m}
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    gates = recipe_with(tmp_path, {"latency_p90_ms": 1e6})
    r = cli("gate", "--profile", short, "-r", gates)
    assert r.exit_code == 3, r.output
    assert "needs at least 44" in r.output
    assert cli("gate", "--profile", short, "-r", gates, "--strict").exit_code == 1


def test_ab_on_an_artifact_dir_times_the_chosen_artifact_with_its_reference_input(cli, digits_run) -> None:
    pytest.importorskip("onnxruntime")
    r = cli("gate", "--ab", digits_run.out_dir, digits_run.out_dir, "--artifact", "int8", "--backend", "onnxruntime",
            "--rounds", "6", "--block-s", "0.02")
    # the verdict is a timing (test_gate_ab checks A/A verdicts); this checks what was timed
    assert r.exit_code in (0, 1, 3), r.output
    assert "median latency" in r.output, r.output
    assert f"{digits_run.out_dir.name}:int8" in r.output and "(onnxruntime)" in r.output, r.output
