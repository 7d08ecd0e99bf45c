"""The qnn-htp runtime on the HTP emulator of the onnxruntime-qnn wheel (CPU fallback disabled),
and the digits CNN recipe end to end on it. Skipped where the wheel is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn (edgekit[npu]) is not installed: no HTP emulator")
psutil = pytest.importorskip("psutil")
from onnx import TensorProto, helper  # noqa: E402

from edgekit.errors import ModelLoadError, StageError  # noqa: E402
from edgekit.runtimes import open_runner  # noqa: E402
from edgekit.runtimes.npu import qnn  # noqa: E402
from tests.conftest import RECIPES, fast_profile, write_recipe  # noqa: E402
from tests.onnx_graphs import qdq_conv  # noqa: E402


def _erf(path: Path) -> Path:
    g = helper.make_graph([helper.make_node("Erf", ["x"], ["y"], name="the_erf")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_the_htp_runs_a_qdq_conv_like_onnxruntime_and_says_where(tmp_path):
    path = qdq_conv(tmp_path / "conv.onnx")
    x = np.random.default_rng(1).uniform(-2, 2, size=(1, 1, 32, 32)).astype(np.float32)
    htp = open_runner("qnn-htp", path, 1)
    cpu = open_runner("onnxruntime", path, 1)
    try:
        got, ref = htp.run({"x": x})[0], cpu.run({"x": x})[0]
        assert htp.details["soc_model"] == qnn.DEFAULT_SOC
        where = htp.where()
        assert where["cpu_class"] == f"qnn-htp soc {qnn.DEFAULT_SOC}" and where["mode"] == "emulated"
    finally:
        htp.close()
        cpu.close()
    # the same QDQ arithmetic, rounded by different kernels: at most two output steps (0.02 each)
    # apart, and almost everywhere at most one
    diff = np.abs(got - ref)
    assert diff.max() <= 0.041 and (diff <= 0.021).mean() > 0.99


def test_close_releases_the_session(tmp_path):
    path = qdq_conv(tmp_path / "conv.onnx")
    feeds = {"x": np.zeros((1, 1, 32, 32), np.float32)}
    # the backend's one-off allocations first; in a long test process the allocator also keeps
    # growing its arenas for a while after the first runners (seen in the full suite, after the
    # language-model tests), so the leak is measured over 40 runners after 20 more warm ones
    for _ in range(20):
        r = open_runner("qnn-htp", path, 1)
        r.run(feeds)
        r.close()
    before = psutil.Process().memory_info().rss / 2**20
    kept = []
    for _ in range(40):
        r = open_runner("qnn-htp", path, 1)
        r.run(feeds)
        r.close()
        r.close()  # idempotent
        kept.append(r)
    grown = psutil.Process().memory_info().rss / 2**20 - before
    assert all(r.session is None for r in kept)
    assert grown < 40 * 0.5, f"40 closed qnn-htp runners still hold {grown:.0f} MiB"
    with pytest.raises(AttributeError):
        kept[0].run(feeds)


def test_a_node_the_htp_cannot_run_fails_the_load_naming_it(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        open_runner("qnn-htp", _erf(tmp_path / "erf.onnx"), 1)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"qnn-htp: cannot load {tmp_path / 'erf.onnx'}: 1 node(s) the HTP cannot run: 'the_erf' (Erf")


def test_a_graph_target_npu_made_and_the_htp_refuses_is_a_stage_failure(tmp_path):
    from edgekit.runtimes.refusal import open_artifact
    from edgekit.stages.state import Artifact

    class Export:
        kind, name = "export.onnx", "fp32"

    class Npu:
        kind, name = "target.npu", "npu_qnn_htp"

    art = Artifact("npu_qnn_htp", _erf(tmp_path / "npu_qnn_htp.onnx"), "qnn-onnx", "int16", "target.npu")
    with pytest.raises(StageError) as e:
        open_artifact("qnn-htp", art, 1, [Export(), Npu()])
    assert e.value.exit_code == 1
    assert str(e.value).startswith("stages[1] (target.npu) made npu_qnn_htp.onnx, which qnn-htp refuses")
    assert "'the_erf' (Erf" in str(e.value)


def test_missing_says_how_to_install(monkeypatch):
    assert qnn.missing() is None
    monkeypatch.setattr("edgekit.runtimes.npu.qnn.is_available", lambda m: m != "onnxruntime_qnn")
    assert "pip install 'edgekit[npu]'" in qnn.missing()


@pytest.mark.slow
def test_digits_cnn_recipe_end_to_end_on_the_htp_emulator(cli, tmp_path):
    """~40 s: export, rewrite, calibrate, quantize, check, then verify on onnxruntime and on the
    HTP emulator with CPU fallback disabled; the manifest says where it ran."""
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    data = fast_profile(yaml.safe_load((RECIPES / "npu_qnn_digits.yaml").read_text()))
    data["data"]["evaluation"]["samples"] = 100
    data["verify"]["samples"] = 100
    m = run(load_recipe(write_recipe(tmp_path, data)), tmp_path / "out").manifest
    art = next(a for a in m["artifacts"] if a["name"] == "npu_qnn_htp")
    assert art["format"] == "qnn-onnx" and art["runs_on"] == ["onnxruntime", "qnn-htp"]
    htp = next(v for v in art["verified_on"] if v["runtime"] == "qnn-htp")
    assert htp["mode"] == "emulated" and htp["cpu_class"].startswith("qnn-htp soc")
    ref = m["metrics"]["reference"]["value"]
    assert ref - m["metrics"]["npu_qnn_htp"]["qnn-htp"]["value"] <= 0.01
    rec = next(s for s in m["stages"] if s["kind"] == "target.npu")["measured"]
    assert rec["problems_left"] == [] and rec["nodes_before"] > 0 and rec["nodes_quantized_graph"] > rec["nodes_before"]
    assert rec["precision_mix"]["Conv"] == {"a:uint16": 3, "w:uint8": 3, "bias:int32": 3}
    out = tmp_path / "out" / m["name"]
    r = cli("inspect", out, "--target", "qnn-htp")
    assert r.exit_code == 1  # the fp32 artifact is float: the NPU one is clean
    assert "npu_qnn_htp on qnn-htp: 0 problem(s) — runs as is" in r.output
    assert "fp32 on qnn-htp:" in r.output and "graph is float" in r.output
    # its latency is the emulator's: the summary says so; the CPU rows stay plain
    from edgekit.report.rows import summary_rows

    labels = {(row["artifact"], row["runtime"]) for row in summary_rows(m)}
    assert ("npu_qnn_htp", "qnn-htp (emulator)") in labels and ("npu_qnn_htp", "onnxruntime") in labels
