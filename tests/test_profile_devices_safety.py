"""ssh devices: hostile names refused, no option injection, a timed-out job stopped and removed
on the device; `local` cannot be redefined. The "device" is this machine behind a fake `ssh`
that runs the remote command with sh, so the remote script itself is what is tested."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import BackendUnavailable, UsageError
from edgekit.profile.devices import SshDevice, load_devices, ssh_command


@pytest.mark.parametrize("field,value", [
    ("host", "-oProxyCommand=touch /tmp/pwned"), ("host", "pi; rm -rf ~"), ("host", "pi host"),
    ("host", "$(id)"), ("user", "-l root"), ("user", "pi`id`"), ("user", "a b"),
])
def test_hostile_host_or_user_is_refused(tmp_path, field, value):
    f = tmp_path / "devices.yaml"
    dev = {"kind": "ssh", "host": "pi.local", "user": "pi", field: value}
    import yaml

    f.write_text(yaml.safe_dump({"devices": {"pi": dev}}))
    with pytest.raises(UsageError, match=rf"devices.pi.{field}: not a host/user name .*got"):
        load_devices(f)


def test_destination_follows_double_dash():
    cmd = ssh_command(SshDevice(kind="ssh", host="pi.local", user="pi"), "true")
    assert cmd[-3:] == ["--", "pi@pi.local", "true"]


def test_local_is_reserved(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_text("devices:\n  local: {kind: local, python: /tmp/evil}\n")
    with pytest.raises(UsageError, match="devices.local: 'local' is reserved"):
        load_devices(f)


def test_profile_ignores_a_devices_yaml_for_the_local_device(cli, tmp_path, monkeypatch):
    """A devices.yaml lying in the working directory is not read for --device local."""
    from test_profile_devices import tiny_onnx

    model = tiny_onnx(tmp_path / "t.onnx")
    (tmp_path / "devices.yaml").write_text("devices: {broken")
    monkeypatch.chdir(tmp_path)
    r = cli("profile", model, "--warmup", "0", "--min-duration", "0", "--min-iters", "2", "-o", tmp_path / "p.json")
    assert r.exit_code == 0, r.output


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\nfor a; do last=$a; done\nexec sh -c "$last"\n')
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_a_job_past_its_timeout_is_stopped_and_removed_on_the_device(tmp_path, fake_ssh):
    from edgekit.profile.devices import run_ssh

    sleeper = tmp_path / "slow-python"
    sleeper.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 60\n")
    sleeper.chmod(0o755)
    work = tmp_path / "remote"
    dev = SshDevice(kind="ssh", host="board", python=str(sleeper), workdir=str(work), timeout_s=1,
                    connect_timeout_s=1)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"device 'board' \(board:22\): no result within 1 s"):
        run_ssh("board", dev, model, [model], {"runtime": "onnxruntime"}, {"x": np.ones(1)})
    assert time.monotonic() - t0 < 10
    assert not any(work.iterdir())  # the job directory is gone
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the job still runs on the device"
