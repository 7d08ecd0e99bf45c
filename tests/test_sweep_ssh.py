"""A sweep over two devices, this machine and an ssh device (a real OpenSSH server on
127.0.0.1): every setting is built once and timed on each device, the ssh device's timings run
there (its own process, its own CPU record) one at a time, each device gets its chosen recipe,
and a second run starts nothing."""

from __future__ import annotations

import pytest
import yaml

from edgekit.profile.schema import load_profile
from tests.sweep_helpers import worker_path, write_sweep

pytest.importorskip("ray")


def test_sweep_times_every_trial_on_the_ssh_device_too(tmp_path, monkeypatch, sshd):
    from edgekit import sweep

    worker_path(monkeypatch)
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(
        {"devices": {"loopback": sshd.model_dump(mode="json", exclude_none=True)}}, sort_keys=False))
    f = write_sweep(tmp_path, devices=["local", "loopback"], devices_file="devices.yaml")
    out = tmp_path / "out"
    res = sweep.run(f, out, max_concurrent=2)
    trials = res.summary["trials"]
    assert len(trials) == 4 and {t["status"] for t in trials} == {"ok"}, [t.get("error") for t in trials]
    builds = [task for task in res.summary["tasks"] if task["kind"] == "build"]
    assert len(builds) == 2  # one build per setting, timed on both devices

    remote = [t for t in trials if t["device"] == "loopback"]
    assert len(remote) == 2
    for t in remote:
        prof = load_profile(out / "tiny" / "trials" / t["id"])
        m = next(iter(prof.measurements.values()))
        assert m.device.kind == "ssh" and m.device.host == "127.0.0.1" and m.device.name == "loopback"
        assert m.protocol.isolation == "remote" and m.n >= 1
        assert t["cpu_class"] == m.device.cpu_class and t["cpu_class"].startswith(("x86", "arm64")), t
        assert t["results"][0]["latency_p90_ms"] == pytest.approx(m.p90_ms)
    timings = sorted((task for task in res.summary["tasks"] if task["kind"] == "timing"
                      and task["device"] == "loopback"), key=lambda task: task["started"])
    assert len(timings) == 2 and timings[0]["ended"] <= timings[1]["started"]  # one at a time on the device

    assert set(res.summary["chosen"]) == {"local", "loopback"}
    assert all(c is not None for c in res.summary["chosen"].values())
    workdir = tmp_path / "remote"  # the device's workdir: every job directory removed after its run
    assert workdir.is_dir() and not list(workdir.iterdir())

    again = sweep.run(f, out)
    assert again.started == 0 and again.cached == 4
