"""The one execution path: `run(recipe)` loads the model and data, walks the stages, verifies,
evaluates and profiles every artifact on every target runtime, and writes the artifact
directory atomically. The CLI and the Python API both call it."""

from __future__ import annotations

import datetime as _dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

import edgekit
from edgekit.artifact.files import atomic_dir, file_entry, write_json
from edgekit.artifact.manifest import MANIFEST
from edgekit.checks import evaluate, verify
from edgekit.core.backends import extra_installed
from edgekit.core.progress import Progress, no_progress
from edgekit.errors import BackendUnavailable, EdgekitError, ModelLoadError, RecipeError, StageError, first_line
from edgekit.recipe import LoadedRecipe, required_extras
from edgekit.runtimes import ort, pytorch
from edgekit.runtimes import registry as runtimes
from edgekit.runtimes.cpu_classes import FLOAT_PRECISIONS
from edgekit.stages.registry import REGISTRY
from edgekit.stages.state import Artifact, Dataset, ModelState


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
            from edgekit.runtimes.refusal import is_refusal, refused_in_stage

            if not is_refusal(exc):
                raise
            raise refused_in_stage(f"stages[{i}] ({cfg.kind})", exc) from exc
        except EdgekitError:
            raise
        except Exception as exc:  # a library failing mid-stage: name the stage, keep the cause
            raise StageError(f"stages[{i}] ({cfg.kind}) failed: {type(exc).__name__}: {first_line(exc)}") from exc
        records.append(record.model_dump())
    return records


@dataclass
class Loaded:
    """Phase 1's result: the model, its data, and the state the stages walk."""

    lm: Any
    calib: Optional[Dataset]
    evald: Optional[Dataset]
    state: ModelState
    info: dict[str, Any]
    normalization: Optional[dict[str, Any]] = None  # what was done to an ONNX source (models/onnx_source.py)


@dataclass
class Reference:
    """Phase 3's result: what every artifact is judged against."""

    runner: Any
    runtime: str
    samples: list[dict[str, np.ndarray]]
    labels: Optional[np.ndarray]
    outputs: np.ndarray
    metric: str
    score: float
    user_eval: Any
    nv: int  # samples used for parity


@dataclass
class Verification:
    """Phases 4-5: per artifact and runtime, metrics and where it was verified; skipped pairs,
    classes left unverified and warnings for the summary."""

    metrics: dict[str, Any] = field(default_factory=dict)
    verified_on: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    not_verified: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # target runtime -> why it cannot run here
    not_emulated: list[dict[str, Any]] = field(default_factory=list)  # artifact x runtime x class, with why


def _load(loaded: LoadedRecipe, models_dir: Path, progress: Progress) -> Loaded:
    from edgekit.sources.data import load_data
    from edgekit.sources.model import load_model

    recipe = loaded.recipe
    lm = load_model(recipe.model, recipe.inputs, loaded.base_dir)
    info = dict(lm.info)
    calib = evald = None
    if recipe.data.calibration:
        calib = load_data(recipe.data.calibration, lm.example, "data.calibration", loaded.base_dir, info)
    if recipe.data.evaluation:
        evald = load_data(recipe.data.evaluation, lm.example, "data.evaluation", loaded.base_dir, info)
    state = ModelState(
        torch_model=lm.torch_model, input_names=lm.input_names, output_names=lm.output_names,
        example=lm.example, workdir=models_dir, calibration=calib, evaluation=evald, recipe=recipe,
        progress=progress, threads=recipe.profile.threads,
    )
    normalization = None
    if lm.onnx_path is not None:
        from edgekit.sources.onnx_file import prepare_source  # opset/IR/folding, parity-checked

        copy = models_dir / "fp32.onnx"
        normalization = prepare_source(lm.onnx_path, copy, recipe, lm.example, (calib, evald), recipe.profile.threads)
        state.onnx_path = copy
        state.add(Artifact("fp32", copy, "onnx", "fp32", "source"))
    return Loaded(lm, calib, evald, state, info, normalization)


def _reference(loaded: LoadedRecipe, ld: Loaded, progress: Progress) -> Reference:
    """The source model's outputs on the evaluation set (or what data there is) and its score."""
    from edgekit.runtimes import open_runner
    from edgekit.runtimes.pytorch import TorchRunner

    recipe, lm, evald, calib = loaded.recipe, ld.lm, ld.evald, ld.calib
    samples = evald.samples if evald else (calib.samples[: recipe.verify.samples] if calib else [lm.example])
    labels = evald.labels if evald else None
    threads = recipe.profile.threads
    if lm.torch_model is not None:
        runner: Any = TorchRunner(lm.torch_model, threads)
    else:
        runner = open_runner(ort.NAME, lm.onnx_path, threads)
    try:
        out = _outputs(runner.run, samples, progress("reference outputs", len(samples)))
        user_eval = evaluate.load_evaluator(recipe.accuracy, evald)
        metric = recipe.accuracy.evaluator or evaluate.choose_metric(recipe.accuracy.metric, labels, out)
        score = evaluate.value(metric, user_eval, runner, evald, out, out, labels, "the reference")
    except BaseException:
        runner.close()
        raise
    return Reference(runner, runner.runtime, samples, labels, out, metric, score, user_eval,
                     min(recipe.verify.samples, len(samples)))


def _profiler(loaded: LoadedRecipe, ref: Reference, ver: Verification, progress: Progress) -> Callable[..., None]:
    from edgekit.profile.devices import LocalDevice
    from edgekit.profile.run import measure_job, measure_runner

    pspec = loaded.recipe.profile

    def profile(key: str, runner: Any, timed: Any) -> None:
        if not pspec.enabled:
            return
        if pspec.isolation == "subprocess" and runtimes.runs_device_side(timed.runtime):
            ver.measurements[key] = measure_job(timed, ref.samples[0], pspec, loaded.base_dir, "local", LocalDevice())
        else:
            ver.measurements[key] = measure_runner(timed, runner, ref.samples[0], pspec, loaded.base_dir,
                                                   progress(f"profiling {key}", pspec.min_iters))

    return profile


def _verify_native(loaded: LoadedRecipe, ld: Loaded, ref: Reference, tmp: Path, progress: Progress) -> Verification:
    """Every artifact on every target runtime that runs it, on this machine: parity against the
    reference, the task metric against the budget, then latency."""
    from edgekit.artifact.files import sha256_file
    from edgekit.profile.run import Timed
    from edgekit.runtimes.cpu_classes import native_where
    from edgekit.runtimes.refusal import open_artifact

    recipe, lm = loaded.recipe, ld.lm
    ver = Verification(unavailable={rt: why for rt in recipe.targets if (why := runtimes.get(rt).missing_here())})
    ver.metrics["reference"] = {"runtime": ref.runtime, "metric": ref.metric, "value": ref.score,
                                "samples": len(ref.samples)}
    profile = _profiler(loaded, ref, ver, progress)
    profile(f"reference/{ref.runtime}", ref.runner,
            Timed("reference", ref.runtime, pytorch.FORMAT if ref.runtime == pytorch.NAME else ort.FORMAT, lm.sha256,
                   path=lm.onnx_path, shown_path=lm.source_ref))
    here = native_where()
    for art in ld.state.artifacts:
        ver.metrics[art.name] = {}
        ver.verified_on[art.name] = []
        for rt in recipe.targets:
            if rt not in art.runs_on:
                ver.skipped.append({"artifact": art.name, "runtime": rt, "reason": f"{art.format} does not run on {rt}"})
                continue
            if rt in ver.unavailable:  # an accelerator that is not here: lint offline, run where it is
                problems = [p.line() for p in runtimes.get(rt).check(art.path)]
                ver.skipped.append({"artifact": art.name, "runtime": rt, "reason": f"not here: {ver.unavailable[rt]}",
                                    "problems": problems})
                continue
            # a runtime refusing a graph edgekit made is a stage failure (exit 1), not bad input
            runner = open_artifact(rt, art, recipe.profile.threads, recipe.stages, ld.normalization)
            try:
                # an accelerator runner (the HTP emulator) names where it ran; a CPU runtime ran here
                at = runner.where() if hasattr(runner, "where") else here
                where = f"artifact {art.name!r} on {rt} ({at['cpu_class']}, {at['mode']})"
                out = _outputs(runner.run, ref.samples, progress(f"verifying {art.name} on {rt}", len(ref.samples)))
                par = verify.parity(ref.outputs[: ref.nv], out[: ref.nv])
                verify.check(par, recipe.verify, where)
                value = evaluate.value(ref.metric, ref.user_eval, runner, ld.evald, out, ref.outputs, ref.labels, where)
                evaluate.check(ref.metric, ref.score, value, recipe.accuracy.max_drop, where,
                               recipe.accuracy.higher_is_better)
                summary = evaluate.summary(ref.metric, ref.score, value, recipe.accuracy.higher_is_better)
                ver.metrics[art.name][rt] = {"parity": par, **summary}
                ver.verified_on[art.name].append({"runtime": rt, **at, **_entry(par, summary, len(ref.samples))})
                profile(f"{art.name}/{rt}", runner,
                        Timed(art.name, rt, art.format, sha256_file(art.path), path=art.path,
                               precision=art.precision, shown_path=art.path.relative_to(tmp).as_posix(),
                               options=art.options.get(rt, {})))
            finally:
                runner.close()
    return ver


def _entry(par: dict[str, Any], summary: Optional[dict[str, Any]], samples: int) -> dict[str, Any]:
    out = {"parity_samples": par["samples"], "cosine_mean": par["cosine_mean"], "cosine_worst": par["cosine_worst"],
           "top1_agreement": par.get("top1_agreement"), "passed": True,
           "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if summary is not None:
        out.update(metric=summary["metric"], value=summary["value"], reference=summary["reference"],
                   metric_samples=samples)
    return out


def _verify_emulated(loaded: LoadedRecipe, ld: Loaded, ref: Reference, ver: Verification,
                     progress: Progress) -> None:
    """Each deploy class this machine is not, again under QEMU where it can be emulated; the rest
    is recorded as not verified with the reason, never as passed."""
    from edgekit.checks import emulate
    from edgekit.runtimes.cpu_classes import local_class

    recipe = loaded.recipe
    p = emulate.plan(recipe.deploy.classes(), local_class(), recipe.verify.emulate)
    ver.not_verified.update(p.unverified)
    jobs = [(art, rt) for art in ld.state.artifacts for rt in recipe.targets
            if rt in art.runs_on and runtimes.get(rt).cpu_bound and runtimes.runs_device_side(rt)
            and rt not in ver.unavailable]
    float_jobs = [(art, rt) for art, rt in jobs if art.precision in FLOAT_PRECISIONS]
    jobs = [j for j in jobs if j not in float_jobs]
    if recipe.verify.emulate and float_jobs:
        from edgekit.runtimes.cpu_classes import X86_CLASSES

        # no QEMU needed: every declared x86 class, the ones QEMU cannot emulate (AMX) included
        others = [c for c in recipe.deploy.classes() if c in X86_CLASSES]
        _verify_float_precisions(loaded, ld, ref, ver, float_jobs, others, progress)
    if not p.emulated or not jobs:
        return
    n = min(ref.nv, recipe.verify.emulate_samples or ref.nv)
    inputs = {k: np.concatenate([s[k] for s in ref.samples[:n]]) for k in ld.lm.input_names}
    models = [{"key": f"{art.name}/{rt}", "runtime": rt, "model": str(art.path), "options": art.options.get(rt, {})}
              for art, rt in jobs]
    builtin = ref.user_eval is None
    labels = ref.labels[:n] if ref.labels is not None else None
    runs = _run_classes(recipe, p, models, inputs, progress)
    by_key = {f"{art.name}/{rt}": (art, rt) for art, rt in jobs}
    for cls, qemu_model, key, res in emulate.counted(runs, p.emulated, list(by_key), recipe.verify.emulate_min_samples,
                                                     recipe.verify.emulate_budget_s, ver):
        art, rt = by_key[key]
        got = res.outputs[key]
        k = len(got)  # the samples its share of the budget allowed, at least the minimum
        par = verify.parity(ref.outputs[:k], got)
        verify.check(par, recipe.verify, f"artifact {art.name!r} on {rt} under emulated {cls} (qemu {qemu_model})")
        summary = None
        if builtin:
            lab = labels[:k] if labels is not None else None
            summary = evaluate.summary(ref.metric, evaluate.score(ref.metric, ref.outputs[:k], ref.outputs[:k], lab),
                                       evaluate.score(ref.metric, got, ref.outputs[:k], lab),
                                       recipe.accuracy.higher_is_better)
        ver.verified_on[art.name].append({"runtime": rt, **res.record(key), "samples_planned": n,
                                          **_entry(par, summary, k)})


def _run_classes(recipe: Any, p: Any, models: list[dict[str, Any]], inputs: dict[str, np.ndarray],
                 progress: Progress) -> dict[str, Any]:
    """One emulated outputs job per class of the plan: class -> its EmulatedRun, or the
    EmulationError that left it unverified."""
    from edgekit.checks import emulate

    def one_class(cls: str, qemu_model: str) -> Any:
        tick = progress(f"verifying under emulated {cls} (qemu {qemu_model})", 1)
        try:
            return emulate.run_outputs(cls, models, inputs, recipe.profile.threads, recipe.verify.emulate_budget_s,
                                       recipe.verify.emulate_cache, recipe.verify.emulate_min_samples)
        except emulate.EmulationError as exc:
            return exc
        finally:
            tick(1)

    # classes side by side where the cores allow each its threads (on 2 cores at 2 threads, one
    # at a time: two would halve each other's samples within their budgets)
    workers = max(1, min(len(p.emulated), (os.cpu_count() or 1) // max(1, recipe.profile.threads)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(p.emulated, pool.map(lambda kv: one_class(*kv), p.emulated.items())))


def _verify_float_precisions(loaded: LoadedRecipe, ld: Loaded, ref: Reference, ver: Verification,
                             jobs: list[tuple[Artifact, str]], classes: list[str], progress: Progress) -> None:
    """Float artifacts are not run under emulation (edgekit.checks.float_precision): each
    precision a declared class may run is checked natively instead, forced where it is not this
    machine's default; the record names the method and the precision per class."""
    from dataclasses import replace

    from edgekit.checks import float_precision as fp
    from edgekit.runtimes import ov
    from edgekit.runtimes.cpu_classes import local_class
    from edgekit.runtimes.refusal import open_artifact

    recipe, here = loaded.recipe, local_class()
    n = min(ref.nv, recipe.verify.emulate_samples or ref.nv)
    for art, rt in jobs:
        native = next((v for v in ver.verified_on.get(art.name, []) if v["runtime"] == rt and v["mode"] == "native"),
                      None)
        options = art.options.get(rt, {})
        if native is None:
            continue
        ran_here = options.get("precision") or (ov.default_precision() if rt == ov.NAME else None)
        checked: dict[Any, Any] = {ran_here: native}
        # this machine's class may run another precision too (x86-vnni with and without BF16)
        for c in fp.plan(rt, options, classes, here, ran_here):
            if c.precision not in checked:  # a precision this machine does not run by default: force it here
                forced = replace(art, options={**art.options, rt: {**options, "precision": c.precision}})
                runner = open_artifact(rt, forced, recipe.profile.threads, recipe.stages, ld.normalization)
                try:
                    refused = fp.ran_instead(runner, rt, c.precision)
                    out = None if refused else _outputs(runner.run, ref.samples[:n],
                                                        progress(f"verifying {art.name} on {rt} at {c.precision}", n))
                finally:
                    runner.close()
                if out is not None:
                    par = verify.parity(ref.outputs[:n], out[:n])
                    verify.check(par, recipe.verify, f"artifact {art.name!r} on {rt} at {c.precision} (a precision "
                                                     f"{c.cls} runs)")
                    checked[c.precision] = {"runtime": rt, **_entry(par, None, n)}
                else:
                    checked[c.precision] = refused
            if isinstance(checked[c.precision], str):
                ver.not_verified.setdefault(c.cls, fp.cannot_compute(art.name, rt, c, checked[c.precision]))
                continue
            ver.not_emulated.append(fp.not_emulated(art.name, art.precision, rt, c))
            ver.verified_on[art.name].append(fp.record(checked[c.precision], c, art.precision, here))


def _speed_warnings(manifest: dict[str, Any]) -> list[str]:
    """A variant slower than the fp32 artifact on this machine is worth a line: whether INT8 pays
    depends on the CPU class (NNCF INT8 MiniLM was slower than fp32 on an AVX2-only CPU and several
    times faster on a VNNI one: docs/cpu-classes.md), and so does a pruned or token-reduced graph
    (token merging ran 0.83x on OpenVINO at bf16 on AMX)."""
    prof = manifest.get("profile") or {}
    cls = manifest["environment"]["cpu"].get("class", "?")
    precision = {a["name"]: a["precision"] for a in manifest["artifacts"]}
    out = []
    for rt in manifest["recipe"]["targets"]:
        base = prof.get(f"fp32/{rt}") or (prof.get(f"reference/{ort.NAME}") if rt == ort.NAME else None)
        if not base or not base.get("median_ms"):
            continue
        for name, prec in precision.items():
            m = prof.get(f"{name}/{rt}")
            if name != "fp32" and m and m.get("median_ms"):
                ratio = base["median_ms"] / m["median_ms"]
                if ratio < 1.0:
                    what = "float" if prec in ("int8", "int4", "mixed") else "its fp32 base"
                    out.append(f"{name} is {ratio:.2f}x fp32 speed on {rt} here ({cls}): slower than {what}")
    return out


def _file_entries(state: ModelState, tmp: Path) -> list[dict[str, Any]]:
    files = [file_entry(tmp, a.path, a.format, a.precision) for a in state.artifacts]
    files += [file_entry(tmp, f, "extra") for art in state.artifacts for f in art.extra_files]
    return files + [file_entry(tmp, tmp / "reference.npz", "npz"), file_entry(tmp, tmp / "recipe.yaml", "yaml")]


def _artifact_entries(state: ModelState, ver: Verification, tmp: Path) -> list[dict[str, Any]]:
    return [{"name": a.name, "path": a.path.relative_to(tmp).as_posix(), "format": a.format,
             "precision": a.precision, "produced_by": a.produced_by, "runs_on": list(a.runs_on),
             "bytes": a.size_bytes(), "runtime_options": a.options, "verified_on": ver.verified_on.get(a.name, [])}
            for a in state.artifacts]


def _manifest(loaded: LoadedRecipe, ld: Loaded, records: list[dict[str, Any]], ver: Verification,
              tmp: Path) -> dict[str, Any]:
    """The one place the manifest is assembled from the phases' results."""
    from edgekit.artifact.environment import fingerprint
    from edgekit.profile.schema import new_profile

    recipe, lm, state = loaded.recipe, ld.lm, ld.state
    files = _file_entries(state, tmp)
    if (tmp / "sensitivity.json").is_file():  # written by quantize stages that scan sensitivity
        files.append(file_entry(tmp, tmp / "sensitivity.json", "json"))
    prof = new_profile(ver.measurements)
    env = fingerprint()
    manifest: dict[str, Any] = {
        "schema": 1,
        "edgekit_version": edgekit.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": recipe.name,
        "recipe": recipe.model_dump(mode="json"),
        "recipe_sha256": loaded.sha256,
        "recipe_file": str(loaded.path),
        "source_model": {"kind": lm.source_kind, "ref": lm.source_ref, "sha256": lm.sha256, "task": lm.task,
                         **({"normalization": ld.normalization} if ld.normalization else {})},
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in lm.example.items()},
        "outputs": lm.output_names,
        "data": {
            "calibration": ld.calib.identity(ld.calib.name) if ld.calib else None,
            "evaluation": ld.evald.identity(ld.evald.name) if ld.evald else None,
        },
        "artifacts": _artifact_entries(state, ver, tmp),
        "deploy": {"cpus": recipe.deploy.classes(), "built_on": env["cpu"]["class"],
                   "not_verified": ver.not_verified, "not_emulated": ver.not_emulated},
        "files": files,
        "stages": records,
        "metrics": ver.metrics,
        "skipped": ver.skipped,
        "profile": prof.for_manifest(),  # profile.json's measurements without the raw samples
        "environment": env,
    }
    manifest["warnings"] = ver.warnings + _speed_warnings(manifest)
    if ver.measurements:
        write_json(tmp / "profile.json", prof.to_json())
        manifest["files"].append(file_entry(tmp, tmp / "profile.json", "json"))
    return manifest


# --- causal language models ----------------------------------------------------------------
# The same run, with the measures of a language model: text windows instead of feature samples,
# next-token perplexity, KL and top-1 agreement instead of output cosine, greedy continuations,
# and generation timing (TTFT, decode per token) instead of one latency.

LM_EVAL_SEQ_LEN = 256  # tokens per evaluation window when data.evaluation.seq_len is unset
LM_EVAL_WINDOWS = 8
LM_PROMPTS = 4  # greedy continuations compared token by token
LM_PROMPT_TOKENS = 32
LM_CONTINUATION = 16


def is_lm_recipe(loaded: LoadedRecipe) -> bool:
    from edgekit.sources.causal_lm import is_causal_lm

    return is_causal_lm(loaded.recipe.model, loaded.base_dir)


@dataclass
class LMData:
    windows: np.ndarray  # [n, seq_len] evaluation token windows
    identity: dict[str, Any]
    calibration: Optional[dict[str, Any]]
    calibration_windows: Optional[np.ndarray] = None  # [n, seq_len], for data-aware weight compression
    reference_argmax: list[np.ndarray] = field(default_factory=list)  # the reference's next tokens, per window


def _lm_text(loaded: LoadedRecipe, cl: Any, progress: Progress) -> LMData:
    from edgekit.sources.text import load_text, token_windows

    recipe = loaded.recipe
    ev = recipe.data.evaluation
    if ev is None:
        raise RecipeError(f"{loaded.path.name}: data.evaluation: a causal LM is verified on held-out text; give one, "
                          "e.g. {builtin: pydoc_topics, split: test, seq_len: 256}")
    tok = cl.tokenizer()
    eos = tok.eos_token_id

    def encode(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    context = cl.context_length or LM_EVAL_SEQ_LEN  # a config without max_position_embeddings
    seq = ev.seq_len or min(LM_EVAL_SEQ_LEN, context)
    if cl.context_length and seq > cl.context_length:
        raise RecipeError(f"{loaded.path.name}: data.evaluation.seq_len: {seq} is longer than the model's context "
                          f"({cl.context_length} tokens, max_position_embeddings); allowed: 8 to {cl.context_length}")
    tick = progress("tokenizing evaluation text", 1)
    src = load_text(ev, "data.evaluation", loaded.base_dir)
    windows = token_windows(src.texts, encode, seq, ev.samples or LM_EVAL_WINDOWS, "data.evaluation", sep=eos)
    tick(1)
    calib, cw = None, None
    if recipe.data.calibration is not None:
        c = recipe.data.calibration
        csrc = load_text(c, "data.calibration", loaded.base_dir)
        cw = token_windows(csrc.texts, encode, c.seq_len or seq, c.samples, "data.calibration", sep=eos)
        calib = {**csrc.identity, "windows": int(cw.shape[0]), "seq_len": int(cw.shape[1])}
    return LMData(windows, {**src.identity, "windows": int(windows.shape[0]), "seq_len": int(windows.shape[1])}, calib, cw)


def _lm_verify(loaded: LoadedRecipe, cl: Any, data: LMData, state: ModelState, progress: Progress) -> Verification:
    """Every artifact on every target runtime that runs it, window by window against the fp32
    reference (so no window's logits are kept), then greedy continuations of a few prompts."""
    from edgekit.checks import lm as lmcheck
    from edgekit.runtimes import open_runner
    from edgekit.runtimes.cpu_classes import native_where
    from edgekit.runtimes.genai import TorchLM

    recipe = loaded.recipe
    threads = recipe.profile.threads
    ver = Verification(unavailable={rt: why for rt in recipe.targets if (why := runtimes.get(rt).missing_here())})
    eos = cl.tokenizer().eos_token_id
    ref = TorchLM(cl.torch_model(), threads, eos)
    pairs: list[tuple[Artifact, str]] = []
    for art in state.artifacts:
        ver.verified_on[art.name] = []
        ver.metrics[art.name] = {}
        for rt in recipe.targets:
            if rt not in art.runs_on:
                ver.skipped.append({"artifact": art.name, "runtime": rt, "reason": f"{art.format} does not run on {rt}"})
            elif rt in ver.unavailable:
                ver.skipped.append({"artifact": art.name, "runtime": rt, "reason": f"not here: {ver.unavailable[rt]}"})
            else:
                pairs.append((art, rt))
    runners: dict[tuple[str, str], Any] = {}
    try:
        for art, rt in pairs:
            runners[(art.name, rt)] = open_runner(rt, art.path, threads, **art.options.get(rt, {}))
        tallies = {k: lmcheck.Tally() for k in [("reference", pytorch.NAME), *runners]}
        tick = progress("scoring held-out text (perplexity, KL, top-1)", len(data.windows))
        for ids in data.windows:
            ref_logp = lmcheck.log_softmax(ref.logits(ids))
            data.reference_argmax.append(ref_logp.argmax(-1))
            tallies[("reference", pytorch.NAME)].add(ref_logp, ref_logp, ids)
            for key, runner in runners.items():
                tallies[key].add(ref_logp, runner.logits(ids), ids)
            tick(1)
        prompts = [w[:LM_PROMPT_TOKENS] for w in data.windows[:LM_PROMPTS]]
        tick = progress("greedy continuations", len(prompts) * (1 + len(runners)))
        ref_cont = []
        for p in prompts:
            ref_cont.append(ref.generate(p, LM_CONTINUATION))
            tick(1)
        conts = {}
        for key, runner in runners.items():
            conts[key] = lmcheck.Continuations(ref_cont, [])
            for p in prompts:
                conts[key].candidate.append(runner.generate(p, LM_CONTINUATION))
                tick(1)
    finally:
        runner_details = {k: dict(getattr(r, "details", {})) for k, r in runners.items()}
        for r in runners.values():
            r.close()
    ref_sum = tallies[("reference", pytorch.NAME)].summary()
    ver.metrics["reference"] = {"runtime": pytorch.NAME, "metric": "perplexity", "value": ref_sum["perplexity"],
                                "samples": int(len(data.windows)), "tokens": ref_sum["tokens"]}
    here = native_where()
    for (name, rt), tally in tallies.items():
        if name == "reference":
            continue
        summ = tally.summary()
        where = f"artifact {name!r} on {rt} ({here['cpu_class']}, {here['mode']})"
        inc = lmcheck.check(summ, ref_sum["perplexity"], recipe.verify, recipe.accuracy, where)
        cont = conts[(name, rt)].summary()
        ver.metrics[name][rt] = {"metric": "perplexity", "value": summ["perplexity"], "drop": inc["perplexity_increase"],
                                 "reference": ref_sum["perplexity"], "kl_mean": summ["kl_mean"],
                                 "top1_agreement": summ["top1_agreement"], "tokens": summ["tokens"],
                                 "continuations": cont, "parity": {}}
        ver.verified_on[name].append({
            "runtime": rt, **here, "parity_samples": int(len(data.windows)), "cosine_mean": None, "cosine_worst": None,
            "top1_agreement": summ["top1_agreement"], "kl_mean": summ["kl_mean"], "passed": True,
            "metric": "perplexity", "value": summ["perplexity"], "reference": ref_sum["perplexity"],
            "metric_samples": int(len(data.windows)), "runner": runner_details[(name, rt)],
            "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    from edgekit.checks import lm_emulate

    lm_emulate.verify_classes(recipe, pairs, data.windows, ref.logits, ver,
                              lambda p, models, inputs: _run_classes(recipe, p, models, inputs, progress), open_runner,
                              progress)
    return ver


def _lm_profile(loaded: LoadedRecipe, cl: Any, data: LMData, state: ModelState, ver: Verification,
                progress: Progress) -> dict[str, Any]:
    """Generation timing of the reference and of every verified artifact x runtime, each in a
    fresh process (its own peak RSS and a cold load)."""
    from edgekit.profile.generation import measure_in_child

    spec = loaded.recipe.profile
    if not spec.enabled:
        return {}
    stream = data.windows.reshape(-1)
    prompts = {}
    for p in spec.prompt_tokens:
        if cl.context_length and p + spec.new_tokens > cl.context_length:
            raise RecipeError(f"{loaded.path.name}: profile.prompt_tokens: {p} + new_tokens {spec.new_tokens} exceeds "
                              f"the model's context of {cl.context_length} tokens")
        if p > len(stream):
            raise RecipeError(f"{loaded.path.name}: profile.prompt_tokens: {p} is more than the {len(stream)} "
                              "evaluation tokens there are to build the prompt from")
        prompts[p] = stream[:p]
    eos = cl.tokenizer().eos_token_id
    jobs = [(f"reference/{pytorch.NAME}", pytorch.NAME, cl.directory, {})]
    jobs += [(f"{a.name}/{v['runtime']}", v["runtime"], a.path, a.options.get(v["runtime"], {}))
             for a in state.artifacts for v in ver.verified_on.get(a.name, [])]
    out = {}
    tick = progress("profiling generation (TTFT, decode per token; a fresh process each)", len(jobs))
    for key, rt, model, options in jobs:
        out[key] = measure_in_child(rt, Path(model), prompts, spec.new_tokens, spec, spec.threads, eos, options=options)
        tick(1)
    return out


def _run_lm(loaded: LoadedRecipe, tmp: Path, progress: Progress) -> dict[str, Any]:
    import shutil
    import tempfile

    from edgekit.artifact.environment import fingerprint
    from edgekit.sources.causal_lm import load_causal_lm

    recipe = loaded.recipe
    models_dir = tmp / "models"
    scratch = Path(tempfile.mkdtemp(prefix=".edgekit-lm-", dir=tmp.parent))  # a GGUF's fp32 conversion
    try:
        tick = progress(f"loading the causal LM {recipe.model.ref}", 1)
        cl = load_causal_lm(recipe.model, loaded.base_dir, scratch)
        tick(1)
        data = _lm_text(loaded, cl, progress)
        state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"],
                           example={"input_ids": data.windows[:1]}, workdir=models_dir, recipe=recipe,
                           progress=progress, threads=recipe.profile.threads, causal_lm=cl, scratch=scratch,
                           calibration=None if data.calibration_windows is None else Dataset(
                               "calibration", [{"input_ids": w[None]} for w in data.calibration_windows]))
        records = _run_stages(loaded, state)
        ver = _lm_verify(loaded, cl, data, state, progress)
        generation = _lm_profile(loaded, cl, data, state, ver, progress)
        # the windows scored and the reference's next token at every position: `edgekit verify`
        # re-scores an artifact against them without the source model
        np.savez_compressed(tmp / "reference.npz", **{"input.input_ids": data.windows},
                            output=np.stack(data.reference_argmax).astype(np.int64))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (tmp / "recipe.yaml").write_text(loaded.text, encoding="utf-8")
    files = _file_entries(state, tmp)
    env = fingerprint()
    manifest: dict[str, Any] = {
        "schema": 1, "edgekit_version": edgekit.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": recipe.name, "recipe": recipe.model_dump(mode="json"), "recipe_sha256": loaded.sha256,
        "recipe_file": str(loaded.path),
        "source_model": {"kind": cl.source_kind, "ref": cl.source_ref, "sha256": cl.sha256, "task": "causal-lm",
                         "architecture": cl.architecture, "family": cl.family, "context_length": cl.context_length,
                         **cl.info},
        "inputs": {"input_ids": {"shape": [1, int(data.windows.shape[1])], "dtype": "int64"}},
        "outputs": ["logits"],
        "data": {"calibration": data.calibration, "evaluation": data.identity},
        "artifacts": _artifact_entries(state, ver, tmp),
        "deploy": {"cpus": recipe.deploy.classes(), "built_on": env["cpu"]["class"], "not_verified": ver.not_verified,
                   "not_emulated": ver.not_emulated},
        "files": files, "stages": records, "metrics": ver.metrics, "skipped": ver.skipped,
        "profile": {}, "generation": generation, "environment": env, "warnings": ver.warnings,
    }
    return manifest


def run(loaded: LoadedRecipe, out_root: Path = Path("out"), force: bool = False,
        progress: Optional[Progress] = None) -> RunResult:
    """Load, run the stages, take the reference, verify natively and under emulation, write the
    files and the manifest; all inside a temp dir that becomes out/<name> only at the end."""
    from edgekit.report.html import write_reports

    progress = progress or no_progress
    recipe = loaded.recipe
    check_extras(loaded)
    lm = is_lm_recipe(loaded)
    with atomic_dir(Path(out_root) / recipe.name, force) as tmp:
        models_dir = tmp / "models"
        models_dir.mkdir()
        if lm:
            manifest = _run_lm(loaded, tmp, progress)
            manifest["files"] += write_reports(tmp, manifest)
            write_json(tmp / MANIFEST, manifest)
            return RunResult(out_dir=Path(out_root) / recipe.name, manifest=manifest)
        ld = _load(loaded, models_dir, progress)
        records = _run_stages(loaded, ld.state)
        ref = _reference(loaded, ld, progress)
        try:
            ver = _verify_native(loaded, ld, ref, tmp, progress)
            _verify_emulated(loaded, ld, ref, ver, progress)
        finally:
            ref.runner.close()
        # reference data for later re-verification, and the recipe as given
        np.savez_compressed(tmp / "reference.npz",
                            **{f"input.{k}": np.concatenate([s[k] for s in ref.samples[: ref.nv]])
                               for k in ld.lm.input_names},
                            output=ref.outputs[: ref.nv])
        (tmp / "recipe.yaml").write_text(loaded.text, encoding="utf-8")
        manifest = _manifest(loaded, ld, records, ver, tmp)
        manifest["files"] += write_reports(tmp, manifest)
        write_json(tmp / MANIFEST, manifest)
    return RunResult(out_dir=Path(out_root) / recipe.name, manifest=manifest)
