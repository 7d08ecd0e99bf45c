"""An OpenVINO IR saved by edgekit is the same bytes however many nodes the process made before
it (OpenVINO numbers the names it gives nodes from one process-wide counter)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("openvino")


def _model():
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], ov.Type.f32, name="x")
    w = ops.constant(np.arange(16, dtype=np.float32).reshape(4, 4))
    y = ops.matmul(x, ops.convert(ops.convert(w, ov.Type.f16), ov.Type.f32), False, True)
    y = ops.relu(y)
    y.set_friendly_name("kept_name")
    y.output(0).set_names({"y"})  # as every converted model's outputs are named
    return ov.Model([y], [x], "m")


def test_two_identical_builds_save_identical_bytes_and_user_names_stay(tmp_path):
    import openvino as ov

    from edgekit.export import ov_save

    digests = []
    for i in range(2):
        _model()  # nodes made in between move OpenVINO's name counter
        m = _model()
        path = tmp_path / f"m{i}.xml"
        ov_save.save(m, path)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    names = {op.get_friendly_name() for op in ov.Core().read_model(str(tmp_path / "m0.xml")).get_ops()}
    assert "kept_name" in names and "x" in names
    out = ov.Core().compile_model(str(tmp_path / "m0.xml"), "CPU")(np.ones((1, 4), np.float32))
    assert np.allclose(next(iter(out.values())), np.arange(16, dtype=np.float32).reshape(4, 4).sum(1)[None])


def test_without_renaming_the_names_would_differ():
    """Guards the test above: if OpenVINO stopped numbering names from a shared counter, the
    renaming would be dead code and this says so."""
    a, b = _model(), _model()
    assert [op.get_friendly_name() for op in a.get_ordered_ops()] != [op.get_friendly_name() for op in b.get_ordered_ops()]
