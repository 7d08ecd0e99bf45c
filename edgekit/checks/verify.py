"""Parity of an artifact, run on its own runtime, against the fp32 reference outputs."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgekit.checks import metrics
from edgekit.errors import ParityError, UsageError


def parity(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    cos = metrics.cosine_per_sample(ref, got)
    out: dict[str, Any] = {
        "samples": int(len(ref)),
        "cosine_mean": float(cos.mean()),
        "cosine_worst": float(cos.min()),
        "max_abs_err": metrics.max_abs(ref, got),
    }
    if metrics.looks_like_logits(ref):
        out["top1_agreement"] = metrics.top1_agreement(ref, got)
    return out


def check(result: dict[str, Any], spec: Any, where: str) -> None:
    """Raise ParityError naming the artifact, the tolerance and the worst value found."""
    if not np.isfinite(result["cosine_mean"]) or result["cosine_mean"] < spec.cosine_min:
        raise ParityError(
            f"verify: {where}: mean cosine {result['cosine_mean']:.4f} is below verify.cosine_min "
            f"{spec.cosine_min} (worst sample {result['cosine_worst']:.4f}, max abs error {result['max_abs_err']:.4g})"
        )
    if spec.max_abs is not None and result["max_abs_err"] > spec.max_abs:
        raise ParityError(
            f"verify: {where}: max abs error {result['max_abs_err']:.4g} exceeds verify.max_abs {spec.max_abs}"
        )
    agree = result.get("top1_agreement")
    if spec.top1_agreement_min is not None and agree is not None and agree < spec.top1_agreement_min:
        raise ParityError(
            f"verify: {where}: top-1 agreement {agree:.4f} is below verify.top1_agreement_min {spec.top1_agreement_min}"
        )


def verified_classes(artifact: dict[str, Any]) -> set[str]:
    """Classes a manifest artifact passed verification on (natively or emulated)."""
    return {v["cpu_class"].split(" ")[0] for v in artifact.get("verified_on") or () if v.get("passed")}


def unverified_here(manifest: dict[str, Any], cls: str) -> Optional[str]:
    """A warning when this machine's class is not one the artifacts were verified on."""
    missing = [a["name"] for a in manifest["artifacts"] if cls not in verified_classes(a)]
    if not missing:
        return None
    seen = sorted(set().union(*(verified_classes(a) for a in manifest["artifacts"])))
    return (f"this machine is {cls}, which artifact(s) {', '.join(missing)} were not verified on "
            f"(verified on: {', '.join(seen) or 'nothing'}); run `edgekit verify` here to check and record it")


def _check_files(root: Any, manifest: dict[str, Any]) -> None:
    from edgekit.artifact.files import sha256_file

    for f in manifest["files"]:
        p = root / f["path"]
        if not p.is_file():
            raise UsageError(f"verify: {root}: file {f['path']} listed in the manifest is missing")
        if sha256_file(p) != f["sha256"]:
            raise ParityError(f"verify: {root}: file {f['path']} does not match its sha256 in the manifest")


def reverify(artifact_dir: Any, runtimes: Optional[list[str]] = None, threads: int = 2,
             cpus: Optional[list[str]] = None, record: bool = True) -> list[dict[str, Any]]:
    """Re-check an artifact directory later or elsewhere: every file's sha256 against the
    manifest, then each artifact on each runtime against the stored reference outputs, natively
    or, for each class in `cpus` this machine is not, under QEMU. Passing results are recorded in
    the manifest's `verified_on` (rewritten atomically)."""
    import datetime as _dt
    from pathlib import Path

    from edgekit.artifact.files import write_json
    from edgekit.artifact.manifest import read_manifest, read_reference
    from edgekit.checks import emulate
    from edgekit.checks import lm as lm_checks
    from edgekit.errors import BackendUnavailable, ModelLoadError
    from edgekit.recipe import VerifySpec
    from edgekit.runtimes import open_runner
    from edgekit.runtimes import registry as rt_registry
    from edgekit.runtimes.cpu_classes import FLOAT_PRECISIONS, X86_CLASSES, local_class, native_where
    from edgekit.runtimes.refusal import refused_artifact

    root = Path(artifact_dir)
    manifest = read_manifest(root)
    available = list(dict.fromkeys(rt for art in manifest["artifacts"] for rt in art["runs_on"]))
    unknown = [rt for rt in runtimes or () if rt not in available]
    if unknown:
        raise UsageError(f"verify: --runtime {unknown[0]!r}: no artifact in {root} runs on it; "
                         f"allowed: {', '.join(available)}")
    native = local_class()
    wanted = list(dict.fromkeys(cpus or [native]))
    lm = manifest["source_model"].get("task") == "causal-lm"  # reference.npz: windows, reference argmax
    pairs = [(art, rt) for art in manifest["artifacts"] for rt in art["runs_on"]
             if rt in (runtimes or manifest["recipe"]["targets"])]
    on_cpu = [(a, rt) for a, rt in pairs if rt_registry.get(rt).cpu_bound and rt_registry.runs_device_side(rt)]
    # an encoder's float artifacts are checked natively at the precisions another class runs, as
    # compress does (no QEMU, so any x86 class, AMX's included); the integer ones need emulation
    floats = [] if lm else [(a, rt) for a, rt in on_cpu if a.get("precision") in FLOAT_PRECISIONS]
    needs_qemu = lm or len(floats) < len(on_cpu)
    p = emulate.plan([c for c in wanted if c != native], native)
    refused = {c: why for c, why in p.unverified.items() if needs_qemu or c not in X86_CLASSES}
    if refused:
        cls, why = next(iter(refused.items()))
        raise BackendUnavailable(f"verify: --cpu {cls}: cannot verify here: {why}")
    _check_files(root, manifest)
    spec = VerifySpec(**manifest["recipe"]["verify"])
    inputs, ref = read_reference(root, manifest)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    if native in wanted:
        here = native_where()
        for art, rt in pairs:
            try:
                runner = open_runner(rt, root / art["path"], threads, **(art.get("runtime_options") or {}).get(rt, {}))
            except ModelLoadError as exc:
                raise refused_artifact(art, rt, exc, "verify") from exc
            try:
                at = runner.where() if hasattr(runner, "where") else here  # an accelerator names where it ran
                if lm:  # a causal LM: perplexity and agreement on the stored windows
                    res = lm_checks.against_stored(runner, inputs["input_ids"], ref)
                else:
                    got = np.concatenate([np.asarray(runner.run({k: v[i: i + 1] for k, v in inputs.items()})[0])
                                          for i in range(len(ref))])
            finally:
                runner.close()
            if lm:
                lm_checks.check_stored(res, manifest, f"artifact {art['name']!r} on {rt}")
            else:
                res = parity(ref, got)
                check(res, spec, f"artifact {art['name']!r} on {rt}")
            results.append({"artifact": art["name"], "runtime": rt, **at, **res})
    if lm and p.emulated:
        from edgekit.checks import lm_emulate

        results += lm_emulate.reverify(root, manifest, pairs, inputs, ref, spec, p, threads)
    others = [c for c in wanted if c != native and c in X86_CLASSES]
    if floats and others:
        results += _float_precisions(root, floats, others, native, inputs, ref, spec, threads)
    for cls, qemu_model in ({} if lm else p.emulated).items():
        jobs = [j for j in on_cpu if j not in floats]
        if not jobs:
            continue
        n = min(len(ref), spec.emulate_samples or len(ref))
        run = emulate.reverify_run(cls, [{"key": f"{a['name']}/{rt}", "runtime": rt, "model": str(root / a["path"]),
                                          "options": (a.get("runtime_options") or {}).get(rt, {})} for a, rt in jobs],
                                   {k: v[:n] for k, v in inputs.items()}, threads, spec)
        for art, rt in jobs:
            key = f"{art['name']}/{rt}"
            k = emulate.reverified_samples(run, key, art["name"], rt, spec)
            res = parity(ref[:k], run.outputs[key])
            check(res, spec, f"artifact {art['name']!r} on {rt} under emulated {cls} (qemu {qemu_model})")
            results.append({"artifact": art["name"], "runtime": rt, **run.record(key), **res})
    if record and results:
        by_name = {a["name"]: a for a in manifest["artifacts"]}
        for r in results:
            entry = {k: v for k, v in r.items() if k not in ("artifact", "samples")}
            entry.update(parity_samples=r["samples"], passed=True, verified_at=now, by="edgekit verify")
            kept = [v for v in by_name[r["artifact"]].get("verified_on") or []
                    if (v.get("runtime"), v.get("cpu_class"), v.get("mode")) != (r["runtime"], r["cpu_class"], r["mode"])]
            by_name[r["artifact"]]["verified_on"] = kept + [entry]
        write_json(root / "manifest.json", manifest)
    return results


def _float_precisions(root: Any, pairs: list[tuple[dict[str, Any], str]], classes: list[str], here: str,
                      inputs: dict[str, np.ndarray], ref: np.ndarray, spec: Any, threads: int) -> list[dict[str, Any]]:
    """`verify --cpu CLASS` of float artifacts: each precision the class may run is forced and
    checked here, natively, as compress does (edgekit.checks.float_precision); one this machine
    cannot compute is BackendUnavailable (verify it on such a CPU)."""
    from edgekit.checks import float_precision as fp
    from edgekit.errors import BackendUnavailable
    from edgekit.runtimes import open_runner

    done: dict[tuple[str, str, Optional[str]], Any] = {}
    results = []
    for art, rt in pairs:
        options = (art.get("runtime_options") or {}).get(rt, {})
        for c in fp.plan(rt, options, classes, None, None):
            key = (art["name"], rt, c.precision)
            if key not in done:
                runner = open_runner(rt, root / art["path"], threads, **({**options, "precision": c.precision}
                                                                           if c.precision else options))
                try:
                    refused = fp.ran_instead(runner, rt, c.precision) if c.precision else None
                    got = None if refused else np.concatenate(
                        [np.asarray(runner.run({k: v[i: i + 1] for k, v in inputs.items()})[0]) for i in range(len(ref))])
                finally:
                    runner.close()
                if got is None:
                    done[key] = refused
                else:
                    done[key] = {"runtime": rt, **parity(ref, got)}
                    check(done[key], spec, f"artifact {art['name']!r} on {rt} at {fp.at(c, art['precision'])} (a "
                                           f"precision {c.cls} runs)")
            if isinstance(done[key], str):
                why = fp.cannot_compute(f"artifact {art['name']!r}", rt, c, done[key])
                raise BackendUnavailable(f"verify: --cpu {c.cls}: {why}")
            results.append({"artifact": art["name"], **fp.record(done[key], c, art["precision"], here)})
    return results
