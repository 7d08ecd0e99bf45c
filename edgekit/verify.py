"""Parity of an artifact, run on its own runtime, against the fp32 reference outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import metrics
from edgekit.errors import ParityError


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
