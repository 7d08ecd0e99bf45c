"""The Ray side of a sweep: joining or starting a cluster, and the tasks a trial is made of.

Why the shapes below: builds (export, calibration, quantization, verification) are CPU work that
may run anywhere and in parallel, so they ask for one CPU and are spread over the nodes. A
timing must see an otherwise idle machine, so a timing on a machine of the cluster asks for all
of that node's CPUs, pinned to it: Ray then runs nothing else there until it ends, and the
trial's finishing work (writing the artifact, drawing its report) is a task on the driver's node
for the same reason. Each device is a custom resource of capacity 1 (`edgekit-device:<name>`),
so two timings of one device never overlap either. Every task returns when and where it ran,
so the sweep can show (and a test can check) that no timing overlapped anything."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from edgekit.errors import BackendUnavailable, EdgekitError, UsageError, first_line

PREFIX = "edgekit-device:"


def resource(device: str) -> str:
    return PREFIX + device


@dataclass
class Placement:
    """Where a device's timings run and what they reserve there."""

    node: Optional[str]  # pinned node id, or None (an ssh device: anywhere its resource is)
    num_cpus: float
    resources: dict[str, float]


@dataclass
class Cluster:
    ray: Any
    owned: bool
    driver_node: str
    node_cpus: dict[str, float]
    placement: dict[str, Placement] = field(default_factory=dict)
    _fns: dict[str, Any] = field(default_factory=dict)

    def total_cpus(self) -> int:
        return max(1, int(sum(self.node_cpus.values())))

    def remote(self, fn: Any) -> Any:
        """One RemoteFunction per task function, so Ray exports each function once."""
        if fn.__name__ not in self._fns:
            self._fns[fn.__name__] = self.ray.remote(fn)
        return self._fns[fn.__name__]

    def pinned(self, node: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)


def _place(name: str, cfg: Any, driver: str, nodes: dict[str, dict[str, float]]) -> Placement:
    from edgekit.profile.devices import SshDevice

    if name == "local":  # this machine: the driver's node, all of it
        return Placement(driver, nodes[driver].get("CPU", 0.0), {})
    res = resource(name)
    holders = sorted(n for n, r in nodes.items() if r.get(res, 0) >= 1)
    if not holders:
        raise UsageError(f"device {name!r}: no node of the Ray cluster offers the resource {res!r}; start the "
                         f"node attached to it with: ray start --address <head> --resources '{{\"{res}\": 1}}'")
    if isinstance(cfg, SshDevice):  # the timing runs on the device; any node holding its token may drive it
        return Placement(None, 0.0, {res: 1.0})
    if len(holders) > 1:
        raise UsageError(f"device {name!r} (kind local) is offered by {len(holders)} nodes; a local device is "
                         f"one machine: give {res!r} to one node only")
    node = holders[0]
    return Placement(node, nodes[node].get("CPU", 0.0), {res: 1.0})


def _check_reachable(address: str) -> None:
    """ray.init keeps retrying an address nobody listens on for minutes; a plain host:port is
    tried once here so that a typo is one line in seconds ('auto', ray:// are left to Ray)."""
    import re

    m = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d+)", address)
    if not m:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except OSError as exc:
        raise BackendUnavailable(f"cannot start or join --address {address}: nothing answers there "
                                 f"({exc.strerror or exc}); is the Ray head running (ray start --head)?") from None


@contextmanager
def connect(address: Optional[str], devices: dict[str, Any]) -> Iterator[Cluster]:
    """Join `address`, reuse a Ray already initialised in this process (tests, notebooks), or
    start a local cluster whose head offers every named device; shut down only what we started."""
    from edgekit.core.backends import require

    ray = require("ray", extra="sweep", why="edgekit sweep runs its trials on Ray")
    owned = not ray.is_initialized()
    if owned and address:
        _check_reachable(address)
    if owned:
        opts: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING",
                                "configure_logging": True, "log_to_driver": False}
        try:
            if address:
                ray.init(address=address, **opts)
            else:
                ray.init(resources={resource(n): 1.0 for n in devices if n != "local"}, **opts)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"--address {address}" if address else "a local Ray cluster"
            raise BackendUnavailable(f"cannot start or join {where}: {first_line(exc)}") from None
    try:
        nodes = {n["NodeID"]: dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")}
        driver = ray.get_runtime_context().get_node_id()
        cluster = Cluster(ray, owned, driver, {n: r.get("CPU", 0.0) for n, r in nodes.items()})
        cluster.placement = {name: _place(name, cfg, driver, nodes) for name, cfg in devices.items()}
        yield cluster
    finally:
        if owned:
            ray.shutdown()


# ------------------------------------------------------------------------------------------
# tasks: plain functions, wrapped by Cluster.remote when submitted


def _stamp(kind: str) -> dict[str, Any]:
    import ray

    return {"kind": kind, "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "pid": os.getpid(), "started": time.time()}


def _tar(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(directory.rglob("*")):
            tar.add(p, arcname=p.relative_to(directory).as_posix(), recursive=False)
    return buf.getvalue()


def _untar(blob: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(into, filter="data")


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EdgekitError):
        return {"error": str(exc), "exit_code": exc.exit_code}
    return {"error": f"{type(exc).__name__}: {first_line(exc)}", "exit_code": 1}


def timing_targets(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target runtime, the last artifact that runs there and passed verification: what a
    trial ships for that runtime, and what its timing measures."""
    sha = {f["path"]: f["sha256"] for f in manifest["files"]}
    out = []
    for rt in manifest["recipe"]["targets"]:
        for a in reversed(manifest["artifacts"]):
            if rt in a["runs_on"] and rt in manifest["metrics"].get(a["name"], {}):
                m = manifest["metrics"][a["name"]][rt]
                out.append({"artifact": a["name"], "runtime": rt, "path": a["path"], "format": a["format"],
                            "precision": a["precision"], "options": a["runtime_options"].get(rt, {}),
                            "sha256": sha.get(a["path"], ""), "size_mb": a["bytes"] / 1e6,
                            "metric": m.get("metric"), "value": m.get("value"), "reference": m.get("reference"),
                            "drop": m.get("drop"), "fidelity": m.get("parity", {}).get("cosine_mean")})
                break
    return out


def build_task(text: str, base_dir: str, label: str) -> tuple[dict[str, Any], bytes]:
    """Run the trial's recipe through the ordinary pipeline with profiling off (the timing is a
    task of its own, on the device); return the result and the artifact directory as a tar."""
    import yaml

    from edgekit.pipeline import run
    from edgekit.recipe import LoadedRecipe, parse_recipe

    info = _stamp("build")
    blob = b""
    try:
        import hashlib

        recipe = parse_recipe(yaml.safe_load(text), label)
        quiet = recipe.model_copy(update={"profile": recipe.profile.model_copy(update={"enabled": False})})
        loaded = LoadedRecipe(recipe=quiet, path=Path(base_dir) / label, base_dir=Path(base_dir),
                              sha256=hashlib.sha256(text.encode()).hexdigest(), text=text)
        with tempfile.TemporaryDirectory(prefix="edgekit-trial-") as t:
            result = run(loaded, Path(t), force=True)
            blob = _tar(result.out_dir)
        info.update(ok=True, targets=timing_targets(result.manifest), recipe=recipe.model_dump(mode="json"))
    except Exception as exc:  # a trial's failure is data: recorded, and the sweep goes on
        info.update(ok=False, **_error(exc))
    info["ended"] = time.time()
    return info, blob


def time_task(blob: bytes, targets: list[dict[str, Any]], profile: Any, device: str, cfg: Any,
              base_dir: str) -> dict[str, Any]:
    """Measure each target of a built trial on `device`; runs alone on its node (see module doc)."""
    import numpy as np

    from edgekit.profile.run import Timed, measure_job

    info = _stamp("timing")
    info.update(device=device, measurements={}, errors={})
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-timing-") as t:
            root = Path(t)
            _untar(blob, root)
            with np.load(root / "reference.npz") as ref:
                feeds = {k[len("input."):]: ref[k][:1] for k in ref.files if k.startswith("input.")}
                stream = ref["input.input_ids"].reshape(-1) if "input.input_ids" in ref.files else None
            from edgekit.artifact.manifest import MANIFEST, is_language_model

            if is_language_model(json.loads((root / MANIFEST).read_text(encoding="utf-8"))):
                info["generation"] = _time_lm(root, targets, profile, device, cfg, stream, info["errors"])
                info["ended"] = time.time()
                return info
            for tg in targets:
                key = f"{tg['artifact']}/{tg['runtime']}"
                try:
                    target = Timed(tg["artifact"], tg["runtime"], tg["format"], tg["sha256"], path=root / tg["path"],
                                    precision=tg["precision"], shown_path=tg["path"], options=tg["options"])
                    m = measure_job(target, feeds, profile, Path(base_dir), device, cfg)
                    info["measurements"][key] = m.model_dump(mode="json")
                except EdgekitError as exc:
                    info["errors"][key] = str(exc)
    except Exception as exc:
        info["errors"]["*"] = _error(exc)["error"]
    info["ended"] = time.time()
    return info


def _time_lm(root: Path, targets: list[dict[str, Any]], profile: Any, device: str, cfg: Any, stream: Any,
             errors: dict[str, str]) -> dict[str, Any]:
    """A language model's trial is timed as its recipe would time it: generation (TTFT, decode
    per token) in a fresh process per target, prompts cut from the trial's evaluation windows.
    Generation runs on this node only in this version: a remote device's trial says so."""
    from edgekit.profile.generation import measure_in_child, prompts_from

    out: dict[str, Any] = {}
    if getattr(cfg, "kind", "local") != "local":
        errors["*"] = (f"device {device!r}: language-model trials are timed on local devices only in this version "
                       "(generation profiling runs in a child process on the sweep's own node)")
        return out
    try:
        prompts = prompts_from(stream, list(profile.prompt_tokens), f"device {device!r}")
    except EdgekitError as exc:
        errors["*"] = str(exc)
        return out
    for tg in targets:
        key = f"{tg['artifact']}/{tg['runtime']}"
        try:
            out[key] = measure_in_child(tg["runtime"], root / tg["path"], prompts, profile.new_tokens, profile,
                                        profile.threads, options=tg["options"])
        except EdgekitError as exc:
            errors[key] = str(exc)
    return out


def probe_task(device: str) -> dict[str, Any]:
    """The device's identity as its own node sees it (its fingerprint keys the cache)."""
    from edgekit.profile.schema import local_device

    info = _stamp("probe")
    info["device"] = local_device(device).model_dump(mode="json")
    info["ended"] = time.time()
    return info


def finalize_task(blob: bytes, build: dict[str, Any], timing: dict[str, Any], record: dict[str, Any],
                  trials_dir: str) -> dict[str, Any]:
    """Turn a built and timed trial into an ordinary artifact directory under trials/<id>/:
    the pipeline's files, profile.json from the device, the manifest's profile and recipe,
    both reports, and trial.json. It appears only complete (built aside, renamed last)."""
    from edgekit.artifact.files import atomic_dir, file_entry, write_json
    from edgekit.artifact.manifest import MANIFEST
    from edgekit.profile.schema import Measurement, new_profile
    from edgekit.report.html import write_reports

    info = _stamp("finalize")
    with atomic_dir(Path(trials_dir) / record["id"], force=True) as tmp:
        _untar(blob, tmp)
        manifest = json.loads((tmp / MANIFEST).read_text(encoding="utf-8"))
        manifest["recipe"] = build["recipe"]  # as the user wrote it: profiling on (it ran on the device)
        if "generation" in timing:  # a language model's: its generation profile, as compress writes it
            manifest["generation"] = timing["generation"]
        prof = new_profile({k: Measurement.model_validate(v) for k, v in timing["measurements"].items()})
        files = [f for f in manifest["files"] if f["path"] not in ("profile.json", "report.md", "report.html")]
        if prof.measurements:
            write_json(tmp / "profile.json", prof.to_json())
            files.append(file_entry(tmp, tmp / "profile.json", "json"))
        manifest["profile"] = prof.for_manifest()
        manifest["files"] = files
        manifest["files"] += write_reports(tmp, manifest)
        write_json(tmp / MANIFEST, manifest)
        write_json(tmp / "trial.json", record)
    info["ended"] = time.time()
    return info
