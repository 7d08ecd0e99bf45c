"""Devices: profiling through a real OpenSSH server on 127.0.0.1 (the `sshd` fixture, from
tests/ssh_helpers.py through conftest), and unreachable devices failing fast."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import BackendUnavailable, UsageError
from edgekit.profile.devices import SshDevice, load_devices, pick_device
from edgekit.recipe import ProfileSpec
from tests.ssh_helpers import free_port

FAST = dict(warmup_s=0.05, min_duration_s=0.1, min_iters=8, max_duration_s=5)


def tiny_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    onnx.save(model, str(path))
    return path


def test_profile_onnx_through_real_sshd(tmp_path, sshd):
    from edgekit.profile.run import Timed, measure_job

    model = tiny_onnx(tmp_path / "tiny.onnx")
    target = Timed("tiny", "onnxruntime", "onnx", "abc", path=model)
    m = measure_job(target, {"x": np.ones((1, 16), np.float32)}, ProfileSpec(**FAST), tmp_path, "loopback", sshd)
    assert m.device.kind == "ssh" and m.device.host == "127.0.0.1" and m.device.name == "loopback"
    assert m.protocol.isolation == "remote" and m.n >= 8 and len(m.samples_ms) == m.n
    assert m.peak_rss_mb and m.peak_rss_mb > 10 and m.backend["providers"] == ["CPUExecutionProvider"]
    assert m.energy.provenance == "unavailable"
    assert not any((tmp_path / "remote").iterdir())  # the job directory is removed on the device


def test_ssh_device_refuses_local_meters(tmp_path, sshd):
    from edgekit.profile.run import Timed, measure_job

    spec = ProfileSpec(**FAST, energy={"meter": "auto"})
    with pytest.raises(UsageError, match="reads this machine, not device 'loopback'"):
        measure_job(Timed("t", "onnxruntime", "onnx", "x", path=tiny_onnx(tmp_path / "t.onnx")), {}, spec, tmp_path,
                    "loopback", sshd)


def test_unreachable_device_is_a_quick_clear_error(tmp_path):
    from edgekit.profile.run import Timed, measure_job

    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    dev = SshDevice(kind="ssh", host="127.0.0.1", port=free_port(), connect_timeout_s=3, timeout_s=20,
                    known_hosts=str(tmp_path / "kh"))
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"device 'board' \(127.0.0.1:\d+\) cannot be reached: .*refused"):
        measure_job(Timed("t", "onnxruntime", "onnx", "x", path=tiny_onnx(tmp_path / "t.onnx")),
                    {"x": np.ones((1, 16), np.float32)}, ProfileSpec(**FAST), tmp_path, "board", dev)
    assert time.monotonic() - t0 < 20


def test_devices_yaml(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_text("devices:\n  pi: {kind: ssh, host: 127.0.0.1, user: pi, key: ~/.ssh/id, python: python3}\n")
    devs = load_devices(f)
    assert set(devs) == {"local", "pi"} and devs["pi"].port == 22
    with pytest.raises(UsageError, match=r"--device 'jetson' is not defined .*defined: local, pi"):
        pick_device(devs, "jetson", f)
    f.write_text("devices:\n  pi: {kind: ssh, hots: 1.2.3.4}\n")
    with pytest.raises(UsageError, match="devices.yaml: .*"):
        load_devices(f)
