"""`edgekit profile ARTIFACT_OR_MODEL`: what to measure (every artifact x runtime of an artifact
directory, one .onnx/.xml/.engine file, or a recipe's torch model in eager mode), where, and
with which protocol; returns the schema `Profile`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import UsageError
from edgekit.profile.devices import load_devices, pick_device
from edgekit.profile.run import Target, measure_job, measure_runner
from edgekit.profile.schema import Profile, key_of, new_profile

RUNTIME_OF_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}
FORMAT_OF_RUNTIME = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
ALLOWED = "an out/<name> artifact directory, a .onnx, .xml (OpenVINO IR), .engine/.plan (TensorRT) file, or a recipe .yaml"


@dataclass
class Job:
    target: Target
    feeds: dict[str, np.ndarray]
    runner: Any = None  # an open runner when measured in this process (pytorch eager, tensorrt, --in-process)


def _artifact_jobs(root: Path, backend: Optional[str]) -> list[Job]:
    from edgekit.artifact import read_manifest, read_reference

    manifest = read_manifest(root)
    inputs, _ = read_reference(root, manifest)
    feeds = {k: v[:1] for k, v in inputs.items()}
    shas = {f["path"]: f["sha256"] for f in manifest["files"]}
    targets = manifest["recipe"]["targets"]
    jobs = []
    for a in manifest["artifacts"]:
        for rt in ([backend] if backend else [t for t in targets if t in a["runs_on"]]):
            if rt not in a["runs_on"]:
                raise UsageError(f"--backend {rt}: artifact {a['name']!r} ({a['format']}) runs on {', '.join(a['runs_on'])}")
            if not (root / a["path"]).is_file():
                raise UsageError(f"{root}: artifact {a['name']!r}: {a['path']} listed in the manifest is missing")
            jobs.append(Job(Target(a["name"], rt, a["format"], shas[a["path"]], path=root / a["path"],
                                   precision=a["precision"], shown_path=a["path"],
                                   options=(a.get("runtime_options") or {}).get(rt, {})), feeds))
    return jobs


def _onnx_feeds(path: Path) -> tuple[dict[str, np.ndarray], str]:
    from edgekit.models.load import load_model
    from edgekit.recipe import ModelSpec

    lm = load_model(ModelSpec(onnx=str(path.resolve())), None, Path("."))
    return lm.example, lm.sha256


def _openvino_feeds(path: Path) -> dict[str, np.ndarray]:
    from edgekit.backends import require

    ov = require("openvino", extra="openvino")
    feeds = {}
    for p in ov.Core().read_model(str(path)).inputs:
        if p.get_partial_shape().is_dynamic:
            raise UsageError(f"{path.name}: input {p.get_any_name()!r} has dynamic shape {p.get_partial_shape()}; "
                             "profile an IR with static shapes")
        dt = p.get_element_type().to_dtype()
        feeds[p.get_any_name()] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(list(p.get_shape()), dtype=dt)
    return feeds


def _file_job(path: Path, backend: Optional[str], threads: int) -> Job:
    from edgekit.artifact import sha256_file

    runtime = backend or RUNTIME_OF_SUFFIX[path.suffix]
    fmt = FORMAT_OF_RUNTIME[RUNTIME_OF_SUFFIX[path.suffix]]
    if runtime == "tensorrt" or fmt == "tensorrt":
        if runtime != "tensorrt" or fmt != "tensorrt":
            raise UsageError(f"{path.name}: a TensorRT engine runs only on --backend tensorrt")
        from edgekit.runners.tensorrt import TensorRTRunner

        runner = TensorRTRunner(path, threads)
        return Job(Target(path.stem, runtime, fmt, sha256_file(path), path=path, shown_path=str(path)),
                   runner.example_feeds(), runner)
    if fmt == "onnx":
        if runtime not in ("onnxruntime", "openvino"):
            raise UsageError(f"{path.name}: an ONNX model runs only on --backend onnxruntime or openvino; got {runtime!r}")
        feeds, sha = _onnx_feeds(path)
    else:
        if runtime != "openvino":
            raise UsageError(f"{path.name}: an OpenVINO IR runs only on --backend openvino")
        feeds, sha = _openvino_feeds(path), sha256_file(path)
    return Job(Target(path.stem, runtime, fmt, sha, path=path, shown_path=str(path)), feeds)


def _torch_job(recipe_path: Path, backend: Optional[str], threads: int) -> Job:
    from edgekit.models.load import load_model
    from edgekit.recipe import load_recipe
    from edgekit.runners import TorchRunner

    if backend not in (None, "pytorch"):
        raise UsageError(f"--backend {backend}: a recipe is profiled as its torch model (pytorch eager); "
                         "profile its artifact directory for other runtimes")
    loaded = load_recipe(recipe_path)
    if loaded.recipe.model.kind == "onnx":
        raise UsageError(f"{recipe_path}: model is an ONNX file; profile it directly: edgekit profile {loaded.recipe.model.onnx}")
    lm = load_model(loaded.recipe.model, loaded.recipe.inputs, loaded.base_dir)
    return Job(Target("reference", "pytorch", "pytorch", lm.sha256, shown_path=lm.source_ref), lm.example,
               TorchRunner(lm.torch_model, threads))


BACKENDS = ("onnxruntime", "openvino", "tensorrt", "pytorch")


def resolve(what: Path, backend: Optional[str], threads: int) -> list[Job]:
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: allowed: {', '.join(BACKENDS)}")
    if what.is_dir():
        return _artifact_jobs(what, backend)
    if not what.is_file():
        raise UsageError(f"{what}: not found; give {ALLOWED}")
    if what.suffix in RUNTIME_OF_SUFFIX:
        return [_file_job(what, backend, threads)]
    if what.suffix in (".yaml", ".yml"):
        return [_torch_job(what, backend, threads)]
    raise UsageError(f"{what}: unknown kind of model {what.suffix!r}; give {ALLOWED}")


def profile(what: Path, spec: Any, backend: Optional[str] = None, device: str = "local",
            devices_file: Optional[Path] = None, progress: Callable[[str, int], Callable[[int], None]] = lambda l, t: (lambda n: None)) -> Profile:
    """`spec` is a recipe ProfileSpec (protocol, threads, isolation, energy). ONNX Runtime and
    OpenVINO run as jobs on the device (a fresh process); torch and TensorRT in this process."""
    devices = load_devices(devices_file)
    dev = pick_device(devices, device, devices_file)
    measurements = {}
    jobs = resolve(what, backend, spec.threads)
    try:
        for job in jobs:
            key = key_of(job.target.artifact, job.target.runtime)
            if job.runner is None and spec.isolation == "in_process" and device == "local":
                from edgekit.runners import open_runner

                job.runner = open_runner(job.target.runtime, job.target.path, spec.threads, **job.target.options)
            if job.runner is not None:
                if device != "local":
                    raise UsageError(f"{key}: {job.target.runtime} runs only on --device local here")
                measurements[key] = measure_runner(job.target, job.runner, job.feeds, spec, Path.cwd(),
                                                   progress(f"profiling {key}", spec.min_iters))
                job.runner.close()  # each measured in turn, not all held at once
            else:
                measurements[key] = measure_job(job.target, job.feeds, spec, Path.cwd(), device, dev)
    finally:
        for job in jobs:
            if job.runner is not None:
                job.runner.close()
    return new_profile(measurements)
