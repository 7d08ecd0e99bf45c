"""A real sweep on a real local Ray cluster (ray.init without an address): trials are ordinary
artifacts, a failed trial is recorded and the sweep goes on, timings never overlap another
task, an interrupted sweep resumes without repeating a finished trial, and a finished sweep
re-runs nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from edgekit.artifact.manifest import read_manifest
from edgekit.errors import UsageError
from edgekit.profile.schema import load_profile
from edgekit.recipe import load_recipe
from tests.sweep_helpers import overlaps, worker_path, write_sweep

pytest.importorskip("ray")


class Interrupt:
    """A progress display whose user presses Ctrl-C once the first trial has finished."""

    def __init__(self) -> None:
        self.finished = 0

    def __call__(self, label: str, total: int):
        def tick(n: int) -> None:
            if label.startswith("sweep "):
                self.finished += n
                raise KeyboardInterrupt
        return tick


def test_sweep_interrupted_resumed_and_cached(tmp_path, monkeypatch, cli):
    import ray

    from edgekit import sweep

    worker_path(monkeypatch)
    f = write_sweep(tmp_path, vary={"stages[1].activations.calibration": ["minmax", "percentile"],
                                    # 0.9999999 is beyond an INT8 MLP's parity: those trials fail
                                    "verify.cosine_min": [0.9, 0.9999999]})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep.run(f, out, max_concurrent=2, progress=Interrupt())
    assert not ray.is_initialized()  # the cluster it started is gone
    trials_dir = out / "tiny" / "trials"
    first = {p.name for p in trials_dir.iterdir() if (p / "trial.json").is_file()}
    assert 1 <= len(first) < 4
    assert not list(trials_dir.glob(".*"))  # nothing half-written is left to be mistaken for a result

    with pytest.raises(UsageError, match="did not finish .*pass --resume to continue it"):
        sweep.run(f, out)

    res = sweep.run(f, out, max_concurrent=2, resume=True)
    assert res.cached == len(first) and res.started == 4 - len(first)
    built = {t for task in res.summary["tasks"] if task["kind"] == "build" for t in task["trials"]}
    assert built and not built & first  # no finished trial ran again
    trials = res.summary["trials"]
    assert len(trials) == 4
    failed = [t for t in trials if t["settings"]["verify.cosine_min"] == 0.9999999]
    ok = [t for t in trials if t["settings"]["verify.cosine_min"] == 0.9]
    assert {t["status"] for t in failed} == {"failed"} and {t["status"] for t in ok} == {"ok"}
    assert all("cosine" in t["error"] and t["exit_code"] == 1 for t in failed)
    for t in ok:
        d = trials_dir / t["id"]
        m = read_manifest(d)  # an ordinary artifact: manifest, profile, reports
        assert m["recipe"]["profile"]["enabled"] is True
        key = f"{t['results'][0]['artifact']}/onnxruntime"
        prof = load_profile(d)
        assert prof.measurements[key].p90_ms == pytest.approx(t["results"][0]["latency_p90_ms"])
        assert m["profile"][key]["device"]["cpu_class"] == t["cpu_class"]
        assert (d / "report.html").is_file() and (d / "recipe.yaml").is_file()
        assert t["device"] == "local" and t["cpu_class"].startswith(("x86", "arm64"))
        assert t["results"][0]["metric"] == "top1" and t["results"][0]["latency_p90_ms"] > 0
    assert overlaps(res.summary["tasks"]) == []

    chosen = res.summary["chosen"]["local"]
    assert chosen["trial"] in {t["id"] for t in ok}
    assert chosen["latency_p90_ms"] == min(t["results"][0]["latency_p90_ms"] for t in ok
                                           if t["results"][0]["drop"] <= 0.02)
    loaded = load_recipe(out / "tiny" / chosen["recipe"])  # a ready recipe
    assert loaded.recipe.targets == ["onnxruntime"]
    assert loaded.recipe.stages[1].activations.calibration == chosen["settings"]["stages[1].activations.calibration"]
    assert [p["trial"] for p in res.summary["pareto"]["local"]]
    html = (out / "tiny" / "sweep.html").read_text()
    assert "data:image/png;base64," in html and chosen["trial"] in html

    # the same sweep again, from the CLI: every trial from the cache, none started
    result = cli("sweep", f, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "(0 trials run, 4 from cache)" in result.output
    again = json.loads((out / "tiny" / "sweep.json").read_text())
    assert again["tasks"] == [] and len(again["trials"]) == 4
    state = json.loads((out / "tiny" / "state.json").read_text())
    assert state["status"] == "finished" and (state["trials_run"], state["trials_cached"]) == (0, 4)

    # a model-based search over the same space: 6 asks of 4 settings, so TPE repeats itself; every
    # answer is in the cache (repeats are told the known result), and nothing runs
    pytest.importorskip("optuna")
    data = yaml.safe_load(f.read_text())
    data["search"] = {"method": "tpe", "trials": 6, "seed": 0}
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    tpe = sweep.run(f, out)
    assert tpe.started == 0 and 1 <= tpe.cached <= 4
    assert {t["id"] for t in tpe.summary["trials"]} <= {t["id"] for t in trials}
    assert tpe.summary["chosen"]["local"]["trial"] == chosen["trial"] or tpe.cached < 4


def test_an_address_nobody_answers_is_one_line_exit_4_and_writes_nothing(cli, tmp_path):
    f = write_sweep(tmp_path)
    result = cli("sweep", f, "--out", tmp_path / "out", "--address", "127.0.0.1:1")
    assert result.exit_code == 4, result.output
    assert result.output.startswith("error: cannot start or join --address 127.0.0.1:1: nothing answers there")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "tiny" / "state.json").exists()  # no unfinished run left to --resume


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_repeating_a_finished_trial(tmp_path, monkeypatch):
    """SIGKILL to the whole `edgekit sweep` process group (driver and the Ray cluster it started)
    once a trial has finished; the re-run with --resume runs only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from edgekit import sweep

    worker_path(monkeypatch)
    f = write_sweep(tmp_path, vary={"stages[1].activations.calibration": ["minmax", "percentile", "entropy"]})
    out = tmp_path / "out"
    trials_dir = out / "tiny" / "trials"
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "sweep", str(f), "--out", str(out), "--quiet",
                             "--max-concurrent", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(trials_dir.glob("*/trial.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = {p.parent.name for p in trials_dir.glob("*/trial.json")}
    assert 1 <= len(done) < 3
    res = sweep.run(f, out, resume=True)
    assert res.cached == len(done) and res.started == 3 - len(done)
    built = {t for task in res.summary["tasks"] if task["kind"] == "build" for t in task["trials"]}
    assert len(built) == 3 - len(done) and not built & done
    assert all(t["status"] == "ok" for t in res.summary["trials"])
