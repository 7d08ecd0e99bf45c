"""The one execution path: `run(recipe)` loads the model and data, walks the stages, verifies,
evaluates and profiles every artifact on every target runtime, and writes the artifact
directory atomically. The CLI and the Python API both call it."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

import edgekit
from edgekit import evaluate, verify
from edgekit.artifact import MANIFEST, atomic_dir, file_entry, write_json
from edgekit.backends import extra_installed
from edgekit.errors import BackendUnavailable, EdgekitError, ModelLoadError, RecipeError, StageError, first_line
from edgekit.recipe import LoadedRecipe, required_extras
from edgekit.stage import REGISTRY
from edgekit.state import Artifact, Dataset, ModelState

Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class RunResult:
    out_dir: Path
    manifest: dict[str, Any]


def check_extras(loaded: LoadedRecipe) -> None:
    missing = [e for e in required_extras(loaded.recipe) if not extra_installed(e)]
    if missing:
        raise BackendUnavailable(
            f"{loaded.path.name}: this recipe needs extras that are not installed: "
            f"pip install 'edgekit[{','.join(missing)}]'"
        )


def _outputs(run: Callable[[dict[str, np.ndarray]], list[np.ndarray]], samples: list[dict[str, np.ndarray]],
             tick: Callable[[int], None]) -> np.ndarray:
    outs = []
    for s in samples:
        outs.append(np.asarray(run(s)[0]))
        tick(1)
    return np.concatenate(outs, axis=0)


def _run_stages(loaded: LoadedRecipe, state: ModelState) -> list[dict[str, Any]]:
    records = []
    for i, cfg in enumerate(loaded.recipe.stages):
        stage = REGISTRY[cfg.kind].load()()
        try:
            state, record = stage.run(state, cfg)
        except RecipeError as exc:
            raise RecipeError(f"{loaded.path.name}: stages[{i}].{exc}") from exc
        except ModelLoadError as exc:  # inside a stage, a runner refusing a graph the stage wrote
            from edgekit.refusal import is_refusal, refused_in_stage

            if not is_refusal(exc):
                raise
            raise refused_in_stage(f"stages[{i}] ({cfg.kind})", exc) from exc
        except EdgekitError:
            raise
        except Exception as exc:  # a library failing mid-stage: name the stage, keep the cause
            raise StageError(f"stages[{i}] ({cfg.kind}) failed: {type(exc).__name__}: {first_line(exc)}") from exc
        records.append(record.model_dump())
    return records


def run(loaded: LoadedRecipe, out_root: Path = Path("out"), force: bool = False,
        progress: Optional[Progress] = None) -> RunResult:
    from edgekit.data.load import load_data
    from edgekit.models.load import load_model
    from edgekit.artifact import sha256_file
    from edgekit.profile.devices import LocalDevice
    from edgekit.profile.run import Target, measure_job, measure_runner
    from edgekit.profile.schema import new_profile
    from edgekit.refusal import open_artifact
    from edgekit.runners import TorchRunner, open_runner

    progress = progress or _no_progress
    recipe = loaded.recipe
    check_extras(loaded)
    final = Path(out_root) / recipe.name
    with atomic_dir(final, force) as tmp:
        models_dir = tmp / "models"
        models_dir.mkdir()
        lm = load_model(recipe.model, recipe.inputs, loaded.base_dir)
        info = dict(lm.info)
        normalization: Optional[dict[str, Any]] = None
        calib: Optional[Dataset] = None
        if recipe.data.calibration:
            calib = load_data(recipe.data.calibration, lm.example, "data.calibration", loaded.base_dir, info)
        evald: Optional[Dataset] = None
        if recipe.data.evaluation:
            evald = load_data(recipe.data.evaluation, lm.example, "data.evaluation", loaded.base_dir, info)
        threads = recipe.profile.threads
        state = ModelState(
            torch_model=lm.torch_model, input_names=lm.input_names, output_names=lm.output_names,
            example=lm.example, workdir=models_dir, calibration=calib, evaluation=evald, recipe=recipe,
            progress=progress, threads=threads,
        )
        if lm.onnx_path is not None:
            copy = models_dir / "fp32.onnx"
            from edgekit.models.onnx_source import prepare_source  # opset/IR/folding, parity-checked

            normalization = prepare_source(lm.onnx_path, copy, recipe, lm.example, (calib, evald), threads)
            state.onnx_path = copy
            state.add(Artifact("fp32", copy, "onnx", "fp32", "source", ("onnxruntime", "openvino")))
        records = _run_stages(loaded, state)

        # reference outputs on the evaluation set (or what data there is)
        samples = evald.samples if evald else (calib.samples[: recipe.verify.samples] if calib else [lm.example])
        labels = evald.labels if evald else None
        if lm.torch_model is not None:
            ref_runner: Any = TorchRunner(lm.torch_model, threads)
            ref_rt = "pytorch"
        else:
            ref_runner = open_runner("onnxruntime", lm.onnx_path, threads)
            ref_rt = "onnxruntime"
        ref_out = _outputs(ref_runner.run, samples, progress("reference outputs", len(samples)))
        user_eval = evaluate.load_evaluator(recipe.accuracy, evald)
        higher = recipe.accuracy.higher_is_better
        metric = recipe.accuracy.evaluator or evaluate.choose_metric(recipe.accuracy.metric, labels, ref_out)
        ref_score = evaluate.value(metric, user_eval, ref_runner, evald, ref_out, ref_out, labels, "the reference")
        metrics: dict[str, Any] = {"reference": {"runtime": ref_rt, "metric": metric, "value": ref_score,
                                                 "samples": len(samples)}}
        nv = min(recipe.verify.samples, len(samples))
        measurements: dict[str, Any] = {}
        pspec = recipe.profile

        def profile(key: str, runner: Any, target: Target) -> None:
            if not pspec.enabled:
                return
            if pspec.isolation == "subprocess" and target.runtime in ("onnxruntime", "openvino"):
                measurements[key] = measure_job(target, samples[0], pspec, loaded.base_dir, "local", LocalDevice())
            else:
                measurements[key] = measure_runner(target, runner, samples[0], pspec, loaded.base_dir,
                                                   progress(f"profiling {key}", pspec.min_iters))

        profile(f"reference/{ref_rt}", ref_runner,
                Target("reference", ref_rt, "pytorch" if ref_rt == "pytorch" else "onnx", lm.sha256,
                       path=lm.onnx_path, shown_path=lm.source_ref))
        skipped = []
        for art in state.artifacts:
            metrics[art.name] = {}
            for rt in recipe.targets:
                if rt not in art.runs_on:
                    skipped.append({"artifact": art.name, "runtime": rt, "reason": f"{art.format} does not run on {rt}"})
                    continue
                runner = open_artifact(rt, art, threads, recipe.stages, normalization)  # refusal of a made graph: exit 1
                try:
                    where = f"artifact {art.name!r} on {rt}"
                    out = _outputs(runner.run, samples, progress(f"verifying {art.name} on {rt}", len(samples)))
                    par = verify.parity(ref_out[:nv], out[:nv])
                    verify.check(par, recipe.verify, where)
                    value = evaluate.value(metric, user_eval, runner, evald, out, ref_out, labels, where)
                    evaluate.check(metric, ref_score, value, recipe.accuracy.max_drop, where, higher)
                    metrics[art.name][rt] = {"parity": par, **evaluate.summary(metric, ref_score, value, higher)}
                    profile(f"{art.name}/{rt}", runner,
                            Target(art.name, rt, art.format, sha256_file(art.path), path=art.path,
                                   precision=art.precision, shown_path=art.path.relative_to(tmp).as_posix(),
                                   options=art.options.get(rt, {})))
                finally:
                    runner.close()
        ref_runner.close()

        # files: reference data for later re-verification, the resolved recipe, manifest, report
        np.savez_compressed(tmp / "reference.npz", **{f"input.{k}": np.concatenate([s[k] for s in samples[:nv]])
                                                      for k in lm.input_names}, output=ref_out[:nv])
        (tmp / "recipe.yaml").write_text(loaded.text, encoding="utf-8")
        from edgekit.environment import fingerprint

        files = [file_entry(tmp, a.path, a.format, a.precision) for a in state.artifacts]
        files += [file_entry(tmp, a, "extra") for art in state.artifacts for a in art.extra_files]
        files += [file_entry(tmp, tmp / "reference.npz", "npz"), file_entry(tmp, tmp / "recipe.yaml", "yaml")]
        if (tmp / "sensitivity.json").is_file():  # written by quantize stages that scan sensitivity
            files.append(file_entry(tmp, tmp / "sensitivity.json", "json"))
        prof = new_profile(measurements)
        manifest: dict[str, Any] = {
            "schema": 1,
            "edgekit_version": edgekit.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "name": recipe.name,
            "recipe": recipe.model_dump(mode="json"),
            "recipe_sha256": loaded.sha256,
            "recipe_file": str(loaded.path),
            "source_model": {"kind": lm.source_kind, "ref": lm.source_ref, "sha256": lm.sha256, "task": lm.task,
                             **({"normalization": normalization} if normalization else {})},
            "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in lm.example.items()},
            "outputs": lm.output_names,
            "data": {
                "calibration": calib.identity(calib.name) if calib else None,
                "evaluation": evald.identity(evald.name) if evald else None,
            },
            "artifacts": [
                {"name": a.name, "path": a.path.relative_to(tmp).as_posix(), "format": a.format,
                 "precision": a.precision, "produced_by": a.produced_by, "runs_on": list(a.runs_on),
                 "bytes": a.size_bytes(), "runtime_options": a.options}
                for a in state.artifacts
            ],
            "files": files,
            "stages": records,
            "metrics": metrics,
            "skipped": skipped,
            "profile": prof.for_manifest(),  # profile.json's measurements without the raw samples
            "environment": fingerprint(),
        }
        if measurements:
            write_json(tmp / "profile.json", prof.to_json())
            manifest["files"].append(file_entry(tmp, tmp / "profile.json", "json"))
        from edgekit.report_html import write_reports

        manifest["files"] += write_reports(tmp, manifest)
        write_json(tmp / MANIFEST, manifest)
    return RunResult(out_dir=final, manifest=manifest)
