"""Issue 9's hardening: figures that were silently wrong, and leftovers of earlier runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_report_shows_the_reference_latency_of_an_onnx_source():
    from edgekit.report.rows import summary_rows

    manifest = {"metrics": {"reference": {"runtime": "onnxruntime", "metric": "top1", "value": 0.9}},
                "profile": {"reference/onnxruntime": {"median_ms": 1.5, "p90_ms": 2.0}}, "artifacts": []}
    ref = summary_rows(manifest)[0]
    assert (ref["runtime"], ref["p50_ms"], ref["p90_ms"]) == ("onnxruntime", 1.5, 2.0)


def _strict_json(path: Path):
    def refuse(name: str):
        raise ValueError(f"{path.name} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_sensitivity_json_holds_a_lossless_node_as_strict_json(tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    from test_quantize_shared_weights import _samples, _tied

    from edgekit.artifact.files import write_json
    from edgekit.quantize import sensitivity as sens
    from edgekit.stages.state import Dataset

    src = _tied(tmp_path / "fp32.onnx")
    data = Dataset("d", _samples(2, 0), None, [0, 1])
    rows = sens.scan(lambda out, excluded: shutil.copyfile(src, out), src, ["lm_head"], [], data, None, 1)
    assert rows == [{"node": "lm_head", "sqnr_db": None, "lossless": True}]
    write_json(tmp_path / "sensitivity.json", sens.document(rows, data, None, None))
    assert _strict_json(tmp_path / "sensitivity.json")["nodes"][0]["lossless"] is True


def test_write_json_refuses_nan_and_names_where_it_is(tmp_path):
    from edgekit.artifact.files import write_json

    with pytest.raises(ValueError, match=r"m.json: metrics.int8\[1\] is not a finite number"):
        write_json(tmp_path / "m.json", {"metrics": {"int8": [1.0, float("nan")]}})
    assert not list(tmp_path.iterdir())


def test_write_json_replaces_the_file_atomically(tmp_path, monkeypatch):
    import os

    from edgekit.artifact import files as artifact

    path = tmp_path / "manifest.json"
    path.write_text('{"a": 1}\n')

    def crash(src, dst):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        artifact.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}  # never truncated or half-written
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left behind


def test_energy_integral_needs_no_numpy_2(monkeypatch):
    """pyproject allows numpy >= 1.24, which has no np.trapezoid."""
    from edgekit.profile.energy.base import Trace

    monkeypatch.delattr(np, "trapezoid", raising=False)
    tr = Trace("sampled", t=[0.0, 1.0, 2.0, 3.0], v=[10.0, 10.0, 20.0, 20.0])
    assert tr.joules(0.5, 2.5) == pytest.approx(5.0 + 15.0 + 10.0)


@pytest.mark.parametrize("name,content", [("m.onnx", b"not a model"), ("m.onnx", b""),
                                          ("m.xml", b"<net><layers>")])
def test_a_bad_model_file_is_the_same_failure_on_every_runtime(tmp_path, name, content):
    from edgekit.errors import ModelLoadError
    from edgekit.runtimes import open_runner

    path = tmp_path / name
    path.write_bytes(content)
    runtimes = ["openvino"] if name.endswith(".xml") else ["onnxruntime", "openvino"]
    for rt in runtimes:
        pytest.importorskip(rt)
        with pytest.raises(ModelLoadError, match=rf"{rt}: cannot load .*{name}") as e:
            open_runner(rt, path, 1)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_an_absent_openvino_device_is_unavailable_not_a_bad_model(tmp_path):
    pytest.importorskip("openvino")
    from test_quantize_shared_weights import _tied

    from edgekit.errors import BackendUnavailable
    from edgekit.runtimes import open_runner

    with pytest.raises(BackendUnavailable, match="no such device here"):
        open_runner("openvino", _tied(tmp_path / "m.onnx"), 1, device="NPU")


def test_a_named_external_meter_whose_csv_is_missing_exits_4(cli, tmp_path):
    from test_profile_devices import tiny_onnx

    model = tiny_onnx(tmp_path / "t.onnx")
    r = cli("profile", model, "--energy", "external", "--energy-csv", tmp_path / "nope.csv", "--idle-s", "0",
            "--warmup", "0", "--min-duration", "0", "--min-iters", "2", "-o", tmp_path / "p.json")
    assert r.exit_code == 4, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: profile.energy.meter 'external' cannot read here: "
                                                  "external meter: cannot read"), r.output
    assert "nope.csv" in lines[0] and not (tmp_path / "p.json").exists()


def test_the_working_directory_is_importable_only_while_the_entrypoint_is_imported(tmp_path, monkeypatch):
    import sys

    from edgekit.sources.entrypoint import import_entrypoint

    (tmp_path / "my_ep_mod9.py").write_text("def f():\n    return 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert import_entrypoint("my_ep_mod9:f", "model.python")() == 42
    assert str(tmp_path) not in sys.path and "" not in sys.path
    sys.modules.pop("my_ep_mod9", None)


def test_the_next_run_removes_what_a_killed_run_left_beside_the_artifact(tmp_path):
    import os
    import subprocess

    from edgekit.artifact.files import atomic_dir

    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen(["true"])  # a run that has ended without cleaning up
    p.wait()
    killed = out / f".digits.tmp-{p.pid}-abc123"
    legacy = out / ".digits.tmp-k3j4h5"
    running = out / f".digits.tmp-{os.getpid()}-zzz"
    other = out / f".other.tmp-{p.pid}-abc"
    for d in (killed, legacy, running, other):
        (d / "models").mkdir(parents=True)
    with atomic_dir(out / "digits", force=False) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not killed.exists() and not legacy.exists()
    assert running.exists() and other.exists()  # a live run, and another recipe's leftovers
    assert (out / "digits" / "manifest.json").is_file()


TRACER_MODULE = '''
import torch


class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a Python branch on a tensor: the trace keeps only the branch taken
            return x * 2
        return x - 1


def make():
    return Branchy()
'''


def test_tracer_warnings_are_recorded_and_shown_in_the_summary(cli, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from tests.conftest import write_recipe

    (tmp_path / "branchy_mod9.py").write_text(TRACER_MODULE)
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, {
        "edgekit": 1, "name": "branchy", "model": {"python": "branchy_mod9:make"},
        "inputs": [{"name": "x", "shape": [1, 4]}], "stages": [{"kind": "export.onnx"}],
        "targets": ["onnxruntime"], "profile": {"enabled": False}})
    r = cli("compress", "-r", recipe, "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "branchy" / "manifest.json").read_text())
    tw = manifest["stages"][0]["measured"]["tracer_warnings"]
    assert len(tw) >= 1 and "branchy_mod9.py:7: Converting a tensor to a Python boolean" in tw[0]
    assert "warning: stages[0] (export.onnx): 1 TracerWarning(s): the exported graph may be wrong" in r.output
    assert "TracerWarning" in (tmp_path / "out" / "branchy" / "report.md").read_text()


def test_tests_never_write_into_the_users_cache():
    from edgekit.models.train import cache_dir
    from tests.conftest import TEST_CACHE

    assert cache_dir() == Path(TEST_CACHE)
    assert Path.home() not in cache_dir().parents


def test_latency_statistics_of_a_zero_mean_are_null_not_nan(tmp_path):
    from edgekit.artifact.files import write_json
    from edgekit.profile.stats import summarize

    s = summarize([0.0, 0.0, 0.0])
    assert s["cv"] is None and s["throughput_per_s"] is None
    write_json(tmp_path / "s.json", s)  # strict JSON: would refuse NaN
