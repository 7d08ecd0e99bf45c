"""Parity of an artifact, run on its own runtime, against the fp32 reference outputs."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgekit import metrics
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


def reverify(artifact_dir: Any, runtimes: Optional[list[str]] = None, threads: int = 2) -> list[dict[str, Any]]:
    """Re-check an artifact directory later or elsewhere: every file's sha256 against the
    manifest, then each artifact on each runtime against the stored reference outputs."""
    from pathlib import Path

    from edgekit.artifact import read_manifest, read_reference, sha256_file
    from edgekit.recipe import VerifySpec
    from edgekit.runners import open_runner

    root = Path(artifact_dir)
    manifest = read_manifest(root)
    available = list(dict.fromkeys(rt for art in manifest["artifacts"] for rt in art["runs_on"]))
    unknown = [rt for rt in runtimes or () if rt not in available]
    if unknown:
        raise UsageError(f"verify: --runtime {unknown[0]!r}: no artifact in {root} runs on it; "
                         f"allowed: {', '.join(available)}")
    for f in manifest["files"]:
        p = root / f["path"]
        if not p.is_file():
            raise UsageError(f"verify: {root}: file {f['path']} listed in the manifest is missing")
        if sha256_file(p) != f["sha256"]:
            raise ParityError(f"verify: {root}: file {f['path']} does not match its sha256 in the manifest")
    spec = VerifySpec(**manifest["recipe"]["verify"])
    inputs, ref = read_reference(root, manifest)
    n = len(ref)
    results = []
    for art in manifest["artifacts"]:
        for rt in art["runs_on"]:
            if rt not in (runtimes or manifest["recipe"]["targets"]):
                continue
            runner = open_runner(rt, root / art["path"], threads, **(art.get("runtime_options") or {}).get(rt, {}))
            try:
                got = np.concatenate([np.asarray(runner.run({k: v[i : i + 1] for k, v in inputs.items()})[0]) for i in range(n)])
            finally:
                runner.close()
            res = parity(ref, got)
            check(res, spec, f"artifact {art['name']!r} on {rt}")
            results.append({"artifact": art["name"], "runtime": rt, **res})
    return results
