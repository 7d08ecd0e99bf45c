"""A/B and baseline gates on real ONNX Runtime runs: a candidate that genuinely does twice the
work fails; a model against itself passes or is inconclusive, never fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from benchmarks.gate_ab import matmul_chain  # noqa: E402
from edgekit.gate.ab import AbSettings, check_ab, run_rounds, side_from  # noqa: E402
from edgekit.gate.compare import compare  # noqa: E402
from edgekit.runtimes import open_runner  # noqa: E402

FAST = ["--rounds", "8", "--block-s", "0.03"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ab")
    return {"base": matmul_chain(d / "base.onnx", 4), "slow": matmul_chain(d / "slow.onnx", 8)}


def test_injected_double_run_fails_the_ab_rounds(models: dict[str, Path]) -> None:
    """The documented test hook: run_rounds times plain callables; the candidate runs the same
    model twice per inference."""
    side = side_from(models["base"], None, None)
    runner = open_runner("onnxruntime", side.model, 1)
    base = lambda: runner.run(side.feeds)  # noqa: E731
    slow = lambda: (runner.run(side.feeds), runner.run(side.feeds))  # noqa: E731
    a, b = run_rounds(base, slow, AbSettings(rounds=8, block_s=0.03, warmup_s=0.1))
    assert len(a) == len(b) == 8
    c = compare(a, b)
    assert c.status == "fail", c.reason
    assert 0.5 < c.effect < 2.0


def test_check_ab_opens_the_models_every_round_by_default(models: dict[str, Path]) -> None:
    side = side_from(models["base"], None, None)
    check = check_ab(side, side, "onnxruntime", 1, AbSettings(rounds=6, block_s=0.01, warmup_s=0.02))
    assert "sessions opened 6x" in check.detail, check.detail
    once = check_ab(side, side, "onnxruntime", 1, AbSettings(rounds=6, block_s=0.01, warmup_s=0.02, reopen=0))
    assert "sessions opened 1x" in once.detail, once.detail


def test_cli_ab_twice_the_work_fails(cli, models: dict[str, Path], tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    r = cli("gate", "--ab", models["base"], models["slow"], *FAST, "--junit", junit)
    assert r.exit_code == 1, r.output
    assert "slower" in r.output and "fail" in r.output
    xml = junit.read_text()
    assert "<failure" in xml and 'classname="edgekit.gate.ab"' in xml


def test_same_model_never_fails_across_repeated_runs(models: dict[str, Path]) -> None:
    side = side_from(models["base"], None, None)
    statuses = [check_ab(side, side, "onnxruntime", 1, AbSettings(rounds=6, block_s=0.02, warmup_s=0.05)).status
                for _ in range(5)]
    assert "fail" not in statuses, statuses


def test_cli_same_model_exit_is_pass_or_inconclusive_and_strict_maps_3_to_1(cli, models: dict[str, Path]) -> None:
    r = cli("gate", "--ab", models["base"], models["base"], *FAST)
    assert r.exit_code in (0, 3), r.output
    if r.exit_code == 3:
        assert cli("gate", "--ab", models["base"], models["base"], *FAST, "--strict").exit_code in (0, 1)


def test_ab_rejects_what_it_cannot_time(cli, models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("x")
    r = cli("gate", "--ab", models["base"], tmp_path / "m.txt")
    assert r.exit_code == 2
    assert "not an artifact directory or an .onnx file" in r.output
    r = cli("gate", "--ab", models["base"], models["base"], "--rounds", "2")
    assert r.exit_code == 2 and "needs at least 6" in r.output
    r = cli("gate", "--ab", models["base"], models["base"], "--min-effect", "0")
    assert r.exit_code == 2 and "--min-effect 0.0: must be above 0" in r.output


def test_ab_on_a_runtime_that_is_not_installed_exits_4(cli, models: dict[str, Path]) -> None:
    from edgekit.core.backends import is_available

    if is_available("tensorrt"):
        pytest.skip("tensorrt is installed here")
    r = cli("gate", "--ab", models["base"], models["base"], "--backend", "tensorrt")
    assert r.exit_code == 4
    assert "pip install 'edgekit[tensorrt]'" in r.output


def _profile(cli, model: Path, out: Path) -> Path:
    r = cli("profile", model, "--in-process", "--warmup", "0.05", "--min-duration", "0.3", "--min-iters", "64",
            "-o", out)
    assert r.exit_code == 0, r.output
    return out


def test_baseline_same_model_does_not_fail_and_mismatch_is_refused(cli, models: dict[str, Path], tmp_path: Path) -> None:
    # the same measurement against itself: two separate profiling runs on a shared machine can
    # drift apart by more than any threshold (that is what --ab's interleaving is for)
    base = _profile(cli, models["base"], tmp_path / "base.json")
    r = cli("gate", "--profile", base, "--baseline", base, "--summary", tmp_path / "s.md")
    assert r.exit_code in (0, 3), r.output
    assert "baseline: median latency" in (tmp_path / "s.md").read_text()

    other = _profile(cli, models["slow"], tmp_path / "other.json")
    data = json.loads(other.read_text())
    data["measurements"] = {k.replace("slow", "base"): v for k, v in data["measurements"].items()}
    other.write_text(json.dumps(data))
    r = cli("gate", "--profile", other, "--baseline", base)
    assert r.exit_code == 2
    assert "refusing to compare: model_sha256" in r.output


def test_side_by_side_sessions_do_not_spin_and_keep_the_artifacts_own_settings(models: dict[str, Path]) -> None:
    """Two sessions open in one process: ONNX Runtime's idle workers would spin and slow the
    timed one (an A/A gate failed under load), so A/B opens both without spinning; the
    artifact's session entries (an INT8 overflow fix) are merged, not replaced."""
    own = {"session.x64quantprecision": "1"}
    runner = open_runner("onnxruntime", models["base"], 1, side_by_side=True, session_config=own)
    try:
        assert runner.details["session_config"] == {**own, "session.intra_op.allow_spinning": "0"}
    finally:
        runner.close()
    plain = open_runner("onnxruntime", models["base"], 1, session_config=own)
    try:
        assert plain.details["session_config"] == own
    finally:
        plain.close()
