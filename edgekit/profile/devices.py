"""Where a measurement runs: `devices.yaml` names targets — `local`, and `ssh` hosts.

Either way the job is the same: the device-side runner (`runtimes/device_side.py`, needing only numpy and
the runtime), the model files, the feeds and a job.json, run in a fresh Python process whose
peak RSS is the runner's own. For ssh the files travel as one tar stream on the ssh command's
stdin and the JSON comes back on stdout: one connection per measurement, no scp/rsync round
trips, and the remote directory is removed afterwards. Every ssh call is BatchMode (never a
password prompt) with a connect timeout and keep-alives, and the whole call has a timeout, so
an unreachable or hung device is one clear error, never a hang."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError

from edgekit.core.strict import Strict
from edgekit.errors import BackendUnavailable, ModelLoadError, UsageError, first_line

DEVICE_SIDE = Path(__file__).parents[1] / "runtimes" / "device_side.py"


class LocalDevice(Strict):
    kind: Literal["local"] = "local"
    python: str = Field(sys.executable, description="interpreter for the isolated runner process")
    timeout_s: float = Field(900.0, gt=0)


# a host name, IPv4 or IPv6 address, or ssh_config alias: never an option ("-oProxyCommand=..."),
# never whitespace or shell metacharacters
HOST_RE = r"^[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]*$"
USER_RE = r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]*$"


class SshDevice(Strict):
    kind: Literal["ssh"]
    host: str = Field(pattern=HOST_RE, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    user: Optional[str] = Field(None, pattern=USER_RE, max_length=64)
    key: Optional[str] = Field(None, description="private key file (ssh -i)")
    python: str = "python3"
    workdir: str = "/tmp/edgekit"
    known_hosts: Optional[str] = Field(None, description="UserKnownHostsFile; default: ssh's own")
    host_key_check: Literal["yes", "accept-new"] = "accept-new"
    connect_timeout_s: int = Field(10, ge=1)
    timeout_s: float = Field(900.0, gt=0, description="the whole copy + run")


DeviceConfig = Annotated[Union[LocalDevice, SshDevice], Field(discriminator="kind")]


class DevicesFile(Strict):
    devices: dict[str, DeviceConfig]


def load_devices(path: Optional[Path]) -> dict[str, Any]:
    """name -> device config; `local` always exists and is always this interpreter (a file may
    not redefine it, so a devices.yaml lying in a directory cannot swap the Python that runs)."""
    devices: dict[str, Any] = {"local": LocalDevice()}
    if path is None:
        return devices
    if not path.is_file():
        raise UsageError(f"{path}: devices file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML: {first_line(exc)}") from None
    try:
        parsed = DevicesFile.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"] if p not in ("local", "ssh") or p == e["loc"][1])
        msg = e["msg"]
        if e["type"] == "string_pattern_mismatch":
            msg = "not a host/user name (no leading '-', whitespace or shell characters)"
        raise UsageError(f"{path}: {loc}: {msg}; got {e.get('input')!r}") from None
    if "local" in parsed.devices:
        raise UsageError(f"{path}: devices.local: 'local' is reserved for this machine with this Python; "
                         "give the device another name")
    devices.update(parsed.devices)
    return devices


def pick_device(devices: dict[str, Any], name: str, path: Optional[Path]) -> Any:
    if name not in devices:
        where = str(path) if path else "no --devices file given"
        raise UsageError(f"--device {name!r} is not defined ({where}); defined: {', '.join(devices)}")
    return devices[name]


def _parse(name: str, stdout: str, stderr: str, rc: int) -> dict[str, Any]:
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendUnavailable(f"device {name!r}: the runner gave no result (exit {rc}): {last}")
    try:
        result = json.loads(lines[-1])
    except ValueError as exc:  # truncated (a killed runner, a dropped connection) or not JSON at all
        raise BackendUnavailable(f"device {name!r}: the runner's reply is not valid JSON ({exc.msg} at char {exc.pos}"
                                 f" of {len(lines[-1])}): {lines[-1][:80]!r}") from None
    if not isinstance(result, dict):
        raise BackendUnavailable(f"device {name!r}: the runner's reply is a JSON {type(result).__name__}, not an object")
    if not result.get("ok"):
        if result.get("phase") == "load":  # the runtime refused the model: the model's problem
            raise ModelLoadError(f"device {name!r}: cannot load the model: {result.get('error')}")
        raise BackendUnavailable(f"device {name!r}: the runner failed: {result.get('error')}")
    missing = [k for k, kind in _REPLY.items() if not isinstance(result.get(k), kind)]
    cpu = result.get("cpu")
    if isinstance(cpu, dict) and not (isinstance(cpu.get("model"), str) and isinstance(cpu.get("flags"), dict)):
        missing.append("cpu")
    if missing or not result["samples_ms"] or not all(
            isinstance(v, (int, float)) and 0 <= v < float("inf") for v in result["samples_ms"]):
        bad = missing[0] if missing else "samples_ms"
        raise BackendUnavailable(f"device {name!r}: the runner's reply has no valid {bad!r} "
                                 f"(got {result.get(bad)!r:.60}); is the device's device_side.py an older version?")
    return result


# what a measurement reads from a runner's reply (device_side.run_job), with its JSON type
_REPLY = {"samples_ms": list, "first_inference_ms": (int, float), "warmup_iters": int, "capped": bool,
          "started": (int, float), "ended": (int, float), "backend": dict, "peak_rss_mb": (int, float, type(None)),
          "cpu": dict, "gpus": list, "load_s": (int, float, type(None))}


def _job_files(tmp: Path, job: dict[str, Any], feeds: dict[str, Any]) -> None:
    import numpy as np

    np.savez(tmp / "feeds.npz", **feeds)
    (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")


def run_local(name: str, dev: LocalDevice, model: Path, files: list[Path], job: dict[str, Any],
              feeds: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgekit-job-") as t:
        tmp = Path(t)
        _job_files(tmp, {**job, "model": str(model.resolve()), "inputs": str(tmp / "feeds.npz")}, feeds)
        try:
            proc = subprocess.run([dev.python, str(DEVICE_SIDE), str(tmp / "job.json")], capture_output=True,
                                  text=True, timeout=dev.timeout_s)
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(f"device {name!r}: the runner did not finish within {dev.timeout_s:g} s") from None
        except OSError as exc:
            raise BackendUnavailable(f"device {name!r}: cannot start {dev.python}: {exc}") from None
        return _parse(name, proc.stdout, proc.stderr, proc.returncode)


def ssh_command(dev: SshDevice, remote_cmd: str) -> list[str]:
    cmd = ["ssh", "-p", str(dev.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={dev.connect_timeout_s}",
           "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
           "-o", f"StrictHostKeyChecking={dev.host_key_check}", "-o", "LogLevel=ERROR"]
    if dev.known_hosts:
        cmd += ["-o", f"UserKnownHostsFile={Path(dev.known_hosts).expanduser()}"]
    if dev.key:
        cmd += ["-i", str(Path(dev.key).expanduser()), "-o", "IdentitiesOnly=yes"]
    cmd += ["--", f"{dev.user}@{dev.host}" if dev.user else dev.host, remote_cmd]  # "--": never an option
    return cmd


def remote_script(dev: SshDevice, remote: str) -> str:
    """Unpack, run under `timeout` (so the job ends on the device even when the connection is
    gone and nobody is left to kill it), then remove the job directory whatever happened."""
    q = shlex.quote(remote)
    limit = max(1, int(dev.timeout_s))
    return (f"mkdir -p {q} && tar xf - -C {q} && cd {q} && "
            f"timeout -k 5 {limit} {shlex.quote(dev.python)} device_side.py job.json; "
            f"rc=$?; cd / && rm -rf {q}; exit $rc")


def run_ssh(name: str, dev: SshDevice, model: Path, files: list[Path], job: dict[str, Any],
            feeds: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgekit-job-") as t:
        tmp = Path(t)
        _job_files(tmp, {**job, "model": model.name, "inputs": "feeds.npz"}, feeds)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in [DEVICE_SIDE, tmp / "feeds.npz", tmp / "job.json", *files]:
                tar.add(f, arcname=f.name)
        remote = f"{dev.workdir.rstrip('/')}/job-{uuid.uuid4().hex[:12]}"
        where = f"{dev.user + '@' if dev.user else ''}{dev.host}:{dev.port}"
        late = f"device {name!r} ({where}): no result within {dev.timeout_s:g} s"
        try:
            # the device's own `timeout` ends the job first; this one covers a hung connection
            proc = subprocess.run(ssh_command(dev, remote_script(dev, remote)), input=buf.getvalue(),
                                  capture_output=True, timeout=dev.timeout_s + dev.connect_timeout_s + 10)
        except subprocess.TimeoutExpired:
            try:  # best effort: the remote `timeout` removes it too once the job is killed
                subprocess.run(ssh_command(dev, f"rm -rf {shlex.quote(remote)}"), capture_output=True,
                               timeout=dev.connect_timeout_s + 5)
            except (subprocess.SubprocessError, OSError):
                pass
            raise BackendUnavailable(late) from None
        except FileNotFoundError:
            raise BackendUnavailable("the ssh client is not installed (apt-get install openssh-client)") from None
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            last = (err.strip().splitlines() or ["ssh failed"])[-1]
            raise BackendUnavailable(f"device {name!r} ({where}) cannot be reached: {last}")
        if proc.returncode in (124, 137):  # the device's `timeout` ended the job (137: after -k)
            raise BackendUnavailable(f"{late} (the job was stopped and removed on the device)")
        return _parse(name, out, err, proc.returncode)


def run_job(name: str, dev: Any, model: Path, files: list[Path], job: dict[str, Any],
            feeds: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement job on a device; `files` are every file the model needs (itself
    included), `job` the runtime, threads, options and protocol."""
    if isinstance(dev, SshDevice):
        return run_ssh(name, dev, model, files, job, feeds)
    return run_local(name, dev, model, files, job, feeds)
