"""Runner.close() releases what the runtime holds, even when the caller keeps the runner object
(a list of results, a failure path that keeps a reference): memory stays bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

psutil = pytest.importorskip("psutil")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.runtimes import open_runner  # noqa: E402
from edgekit.runtimes.pytorch import TorchRunner  # noqa: E402


def _model(path: Path) -> Path:
    w = np.random.default_rng(0).normal(size=(256, 1024)).astype(np.float32)  # 1 MiB the session must hold
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.parametrize("runtime,count", [("onnxruntime", 300), pytest.param("openvino", 150, marks=pytest.mark.slow)])
def test_closed_runners_release_their_sessions(tmp_path, runtime, count):
    pytest.importorskip(runtime)
    path = _model(tmp_path / "m.onnx")
    feeds = {"x": np.ones((1, 256), np.float32)}
    for _ in range(10):  # let the runtime's one-off allocations happen first
        r = open_runner(runtime, path, 1)
        r.run(feeds)
        r.close()
    before = _rss_mb()
    kept = []
    for _ in range(count):
        r = open_runner(runtime, path, 1)
        r.run(feeds)
        r.close()
        r.close()  # idempotent
        kept.append(r)
    grown = _rss_mb() - before
    assert grown < count * 0.25, f"{count} closed {runtime} runners still hold {grown:.0f} MiB"


def test_torch_runner_load_time_is_unmeasured_not_zero_and_close_drops_the_module():
    torch = pytest.importorskip("torch")
    r = TorchRunner(torch.nn.Linear(4, 2), 1)
    assert r.load_s is None
    r.close()
    assert r.module is None
