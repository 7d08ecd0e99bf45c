"""`edgekit profile ARTIFACT_OR_MODEL`: what to measure (every artifact x runtime of an artifact
directory, one .onnx/.xml/.engine file, or a recipe's torch model in eager mode), where, and
with which protocol; returns the schema `Profile`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.progress import Progress, no_progress
from edgekit.errors import ModelLoadError, UsageError
from edgekit.profile.devices import load_devices, pick_device
from edgekit.profile.run import Timed, measure_job, measure_runner
from edgekit.profile.schema import Profile, key_of, new_profile
from edgekit.runtimes import ort, pytorch
from edgekit.runtimes import registry as runtimes
from edgekit.runtimes.refusal import refused_artifact


def allowed() -> str:
    files = ", ".join(runtimes.suffixes())
    return f"an out/<name> artifact directory, a model file ({files}), or a recipe .yaml"


@dataclass
class Job:
    timed: Timed
    feeds: dict[str, np.ndarray]
    runner: Any = None  # an open runner when measured in this process (pytorch eager, tensorrt, --in-process)
    artifact: Optional[dict[str, Any]] = None  # its manifest entry, when it comes from an artifact directory


def _artifact_jobs(root: Path, backend: Optional[str]) -> list[Job]:
    from edgekit.artifact.manifest import read_manifest, read_reference

    manifest = read_manifest(root)
    inputs, _ = read_reference(root, manifest)
    feeds = {k: v[:1] for k, v in inputs.items()}
    shas = {f["path"]: f["sha256"] for f in manifest["files"]}
    targets = manifest["recipe"]["targets"]
    jobs = []
    chosen = [a for a in manifest["artifacts"] if backend is None or backend in a["runs_on"]]
    if not chosen:
        raise UsageError(f"--backend {backend}: no artifact in {root} runs on it; its artifacts run on "
                         f"{', '.join(dict.fromkeys(r for a in manifest['artifacts'] for r in a['runs_on']))}")
    for a in chosen:
        for rt in ([backend] if backend else [t for t in targets if t in a["runs_on"]]):
            if not (root / a["path"]).is_file():
                raise UsageError(f"{root}: artifact {a['name']!r}: {a['path']} listed in the manifest is missing")
            jobs.append(Job(Timed(a["name"], rt, a["format"], shas[a["path"]], path=root / a["path"],
                                   precision=a["precision"], shown_path=a["path"],
                                   options=(a.get("runtime_options") or {}).get(rt, {})), feeds, artifact=a))
    return jobs


def _onnx_feeds(path: Path) -> tuple[dict[str, np.ndarray], str]:
    from edgekit.recipe import ModelSpec
    from edgekit.sources.model import load_model

    lm = load_model(ModelSpec(onnx=str(path.resolve())), None, Path("."))
    return lm.example, lm.sha256


def _file_job(path: Path, backend: Optional[str], threads: int) -> Job:
    """A bare model file: the runtime its suffix belongs to unless --backend names another that
    reads the same format; feeds from the graph's own inputs."""
    from edgekit.artifact.files import sha256_file

    own = runtimes.for_suffix(path.suffix)
    fmt = own.formats[0]
    runtime = backend or own.name
    if fmt not in runtimes.get(runtime).formats:
        raise UsageError(f"{path.name}: a {fmt} file runs on --backend {' or '.join(runtimes.runs(fmt))}; got {runtime!r}")
    runner = None
    if fmt == ort.FORMAT:
        feeds, sha = _onnx_feeds(path)
    else:
        sha = sha256_file(path)
        feeds = own.feeds_for(path)
        if feeds is None:  # an engine knows its bindings only once loaded (TensorRT)
            runner = runtimes.open_runner(runtime, path, threads)
            feeds = runner.example_feeds()
    return Job(Timed(path.stem, runtime, fmt, sha, path=path, shown_path=str(path)), feeds, runner)


def _torch_job(recipe_path: Path, backend: Optional[str], threads: int) -> Job:
    from edgekit.recipe import load_recipe
    from edgekit.runtimes.pytorch import TorchRunner
    from edgekit.sources.model import load_model

    if backend not in (None, pytorch.NAME):
        raise UsageError(f"--backend {backend}: a recipe is profiled as its torch model (pytorch eager); "
                         "profile its artifact directory for other runtimes")
    loaded = load_recipe(recipe_path)
    if loaded.recipe.model.kind == "onnx":
        raise UsageError(f"{recipe_path}: model is an ONNX file; profile it directly: edgekit profile {loaded.recipe.model.onnx}")
    lm = load_model(loaded.recipe.model, loaded.recipe.inputs, loaded.base_dir)
    return Job(Timed("reference", pytorch.NAME, pytorch.FORMAT, lm.sha256, shown_path=lm.source_ref), lm.example,
               TorchRunner(lm.torch_model, threads))


def jobs_for(what: Path, backend: Optional[str], threads: int) -> list[Job]:
    """What `edgekit profile WHAT` measures: each artifact x target runtime, one file, or the
    recipe's torch model."""
    if backend is not None:
        runtimes.get(backend, "--backend")
    if what.is_dir():
        return _artifact_jobs(what, backend)
    if not what.is_file():
        raise UsageError(f"{what}: not found; give {allowed()}")
    if runtimes.for_suffix(what.suffix):
        return [_file_job(what, backend, threads)]
    if what.suffix in (".yaml", ".yml"):
        return [_torch_job(what, backend, threads)]
    raise UsageError(f"{what}: unknown kind of model {what.suffix!r}; give {allowed()}")


def is_lm_dir(what: Path) -> bool:
    """A language model's artifact directory; anything else (a foreign or broken manifest
    included) goes the ordinary way, where read_manifest says what is wrong with it."""
    import json

    from edgekit.artifact.manifest import MANIFEST, is_language_model

    try:
        manifest = json.loads((what / MANIFEST).read_text(encoding="utf-8")) if what.is_dir() else None
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and is_language_model(manifest)


def profile_generation(what: Path, spec: Any, backend: Optional[str] = None, device: str = "local",
                       progress: Progress = no_progress) -> dict[str, Any]:
    """A language model's artifact directory: each artifact x runtime timed in generation (TTFT
    per prompt length, decode per token, peak RSS) in a fresh process, as compress does, with
    the recipe's prompt lengths and new tokens cut from the recorded evaluation text; the
    protocol (warm-up, durations, threads) is the command line's."""
    from edgekit.artifact.manifest import read_manifest, read_reference
    from edgekit.profile.generation import measure_in_child, prompts_from

    if device != "local":
        raise UsageError(f"--device {device}: a language model's generation is profiled on --device local only "
                         "in this version")
    manifest = read_manifest(what)
    inputs, _ = read_reference(what, manifest)
    stream = np.asarray(inputs["input_ids"]).reshape(-1)
    rp = manifest["recipe"]["profile"]
    prompts = prompts_from(stream, rp["prompt_tokens"], str(what))
    chosen = [(a, rt) for a in manifest["artifacts"] for rt in a["runs_on"]
              if (backend is None and rt in manifest["recipe"]["targets"]) or rt == backend]
    if not chosen:
        raise UsageError(f"--backend {backend}: no artifact in {what} runs on it; its artifacts run on "
                         f"{', '.join(dict.fromkeys(r for a in manifest['artifacts'] for r in a['runs_on']))}")
    out = {}
    tick = progress("profiling generation (a fresh process each)", len(chosen))
    for a, rt in chosen:
        out[f"{a['name']}/{rt}"] = measure_in_child(rt, what / a["path"], prompts, rp["new_tokens"], spec, spec.threads,
                                                    options=(a.get("runtime_options") or {}).get(rt, {}))
        tick(1)
    return {"kind": "generation", "artifact_dir": str(what), "prompt_tokens": list(prompts),
            "new_tokens": rp["new_tokens"], "generation": out}


def profile(what: Path, spec: Any, backend: Optional[str] = None, device: str = "local",
            devices_file: Optional[Path] = None, progress: Progress = no_progress) -> Profile:
    """`spec` is a recipe ProfileSpec (protocol, threads, isolation, energy). ONNX Runtime and
    OpenVINO run as jobs on the device (a fresh process); torch and TensorRT in this process."""
    devices = load_devices(devices_file)
    dev = pick_device(devices, device, devices_file)
    measurements = {}
    jobs = jobs_for(what, backend, spec.threads)
    try:
        for job in jobs:
            try:
                measurements[key_of(job.timed.artifact, job.timed.runtime)] = _measure(job, spec, device, dev, progress)
            except ModelLoadError as exc:
                if job.artifact is None:  # the user's own file: bad input (exit 2)
                    raise
                raise refused_artifact(job.artifact, job.timed.runtime, exc, "profile") from exc
    finally:
        for job in jobs:
            if job.runner is not None:
                job.runner.close()
    return new_profile(measurements)


def _measure(job: Job, spec: Any, device: str, dev: Any, progress: Progress) -> Any:
    """One job: in this process on an open runner (torch, in-process-only runtimes, or
    --in-process), else as a fresh device-side process on the device."""
    key = key_of(job.timed.artifact, job.timed.runtime)
    in_process = spec.isolation == "in_process" or not runtimes.runs_device_side(job.timed.runtime)
    if job.runner is None and in_process and device == "local":
        from edgekit.runtimes import open_runner

        job.runner = open_runner(job.timed.runtime, job.timed.path, spec.threads, **job.timed.options)
    if job.runner is None:
        return measure_job(job.timed, job.feeds, spec, Path.cwd(), device, dev)
    if device != "local":
        raise UsageError(f"{key}: {job.timed.runtime} runs only on --device local here")
    try:
        return measure_runner(job.timed, job.runner, job.feeds, spec, Path.cwd(), progress(f"profiling {key}", spec.min_iters))
    finally:
        job.runner.close()  # each measured in turn, not all held at once
