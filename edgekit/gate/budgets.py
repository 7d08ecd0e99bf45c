"""Absolute budgets from the recipe's `gates:` against an artifact's manifest and profile.

p90 budgets compare the MLPerf-style early-stopping upper bound, not the sample p90: a budget
passes only when, with 99% confidence, the true p90 is within it. p99 compares the sample p99
(the bound needs 662 samples at 99%, more than most profiles take)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from edgekit.errors import UsageError
from edgekit.gate import Check
from edgekit.profile.schema import Measurement, Profile

REFERENCE = "reference"


def _limit_check(name: str, subject: str, measured: Optional[float], limit: float, unit: str,
                 higher_is_worse: bool, what: str) -> Check:
    if measured is None:
        return Check("budget", name, subject, "unavailable", None, limit, unit, f"{what} was not measured")
    ok = measured <= limit if higher_is_worse else measured >= limit
    op = ("<=" if ok else ">") if higher_is_worse else (">=" if ok else "<")
    u = f" {unit}" if unit else ""
    return Check("budget", name, subject, "pass" if ok else "fail", measured, limit, unit,
                 f"{what} {measured:.4g}{u} {op} {limit:.4g}{u}")


def _p90(name: str, key: str, m: Measurement, limit: float) -> Check:
    if m.p90_upper_bound_ms is None:
        return Check("budget", name, key, "inconclusive", None, limit, "ms",
                     f"{m.n} samples: the p90 early-stopping bound needs at least 44 (sample p90 {m.p90_ms:.4g} ms)")
    return _limit_check(name, key, m.p90_upper_bound_ms, limit, "ms", True, "p90 upper bound (99% conf.)")


def _energy(name: str, key: str, m: Measurement, limit: float) -> Check:
    e = m.energy
    if e.provenance == "unavailable":
        return Check("budget", name, key, "unavailable", None, limit, "mJ", f"energy unavailable: {e.reason}")
    joules, which = (e.net_j_per_inference, "net") if e.net_j_per_inference is not None else (e.gross_j_per_inference, "gross")
    return _limit_check(name, key, None if joules is None else joules * 1000.0, limit, "mJ", True,
                        f"{which} energy/inference ({e.provenance})")


PROFILE_BUDGETS: dict[str, Callable[[str, str, Measurement, float], Check]] = {
    "latency_p90_ms": _p90,
    "latency_p99_ms": lambda n, k, m, lim: _limit_check(n, k, m.p99_ms, lim, "ms", True, "sample p99"),
    "peak_rss_mb": lambda n, k, m, lim: _limit_check(n, k, m.peak_rss_mb, lim, "MB", True, "peak RSS"),
    "energy_mj_per_inference": _energy,
}
MANIFEST_BUDGETS = ("size_mb", "accuracy_drop_max", "fidelity_min")


def _ttft(name: str, key: str, g: dict[str, Any], limit: float) -> Check:
    """TTFT at the first profiled prompt length, by its early-stopping p90 bound like latency."""
    prompts = g.get("prompts") or {}
    if not prompts:
        return Check("budget", name, key, "unavailable", None, limit, "ms", "no prompt was timed")
    length, first = next(iter(prompts.items()))
    t = first["ttft_ms"]
    if t.get("p90_upper_bound_ms") is None:
        return Check("budget", name, key, "inconclusive", None, limit, "ms",
                     f"{t['n']} TTFT samples at {length} prompt tokens: the p90 bound needs at least 44 "
                     f"(sample p90 {t['p90_ms']:.4g} ms)")
    return _limit_check(name, key, t["p90_upper_bound_ms"], limit, "ms", True,
                        f"TTFT p90 upper bound (99% conf., {length} prompt tokens)")


# a causal LM's budgets, read from the manifest's generation profile (edgekit.profile.generation)
GENERATION_BUDGETS: dict[str, Callable[[str, str, dict[str, Any], float], Check]] = {
    "decode_tokens_per_s_min": lambda n, k, g, lim: _limit_check(n, k, g.get("decode_tokens_per_s"), lim, "tok/s",
                                                                  False, "decode tokens/s (median, after the first)"),
    "ttft_p90_ms": _ttft,
    "peak_rss_mb": lambda n, k, g, lim: _limit_check(n, k, g.get("peak_rss_mb"), lim, "MB", True, "peak RSS"),
}


def subjects(keys: list[str], select: Optional[list[str]]) -> list[str]:
    """Keys `<artifact>/<runtime>` that `--artifact` picks (a name or a full key); the
    reference is not a deployable artifact and is never gated."""
    keys = [k for k in keys if k.split("/")[0] != REFERENCE]
    if not select:
        return keys
    picked = [k for k in keys if k in select or k.split("/")[0] in select]
    unknown = [s for s in select if not any(k == s or k.split("/")[0] == s for k in keys)]
    if unknown:
        raise UsageError(f"--artifact {unknown[0]!r} is not in the artifact; allowed: {', '.join(keys)}")
    return picked


def check_budgets(gates: Any, manifest: Optional[dict[str, Any]], profile: Optional[Profile],
                  select: Optional[list[str]] = None) -> list[Check]:
    known = {**PROFILE_BUDGETS, **GENERATION_BUDGETS, **dict.fromkeys(MANIFEST_BUDGETS)}
    limits = {k: v for k, v in gates.model_dump().items() if k in known and v is not None}
    checks: list[Check] = []
    generation = (manifest or {}).get("generation")
    if generation is not None:  # a causal LM: its timings are generation timings
        for name in [k for k in limits if k in GENERATION_BUDGETS]:
            limit = limits.pop(name)
            checks += [GENERATION_BUDGETS[name](name, key, generation[key], limit)
                       for key in subjects(list(generation), select)]
    else:
        lm_only = [k for k in limits if k in GENERATION_BUDGETS and k not in PROFILE_BUDGETS]
        if lm_only:
            raise UsageError(f"gates.{lm_only[0]} applies to a causal LM's generation profile; this artifact has "
                             "none (its model is not a causal LM, or it was built with profile.enabled: false)")
    need_profile = [k for k in limits if k in PROFILE_BUDGETS]
    if need_profile:
        if profile is None:
            raise UsageError(f"gates.{need_profile[0]} needs a profile: give ARTIFACT_DIR or --profile FILE")
        for key in subjects(list(profile.measurements), select):
            m = profile.measurements[key]
            checks += [PROFILE_BUDGETS[name](name, key, m, limits[name]) for name in need_profile]
    need_manifest = [k for k in limits if k in MANIFEST_BUDGETS]
    if need_manifest:
        if manifest is None:
            raise UsageError(f"gates.{need_manifest[0]} needs the artifact's manifest: give ARTIFACT_DIR")
        checks += _manifest_checks(manifest, {k: limits[k] for k in need_manifest}, select)
    return checks


def _manifest_checks(manifest: dict[str, Any], limits: dict[str, float], select: Optional[list[str]]) -> list[Check]:
    checks: list[Check] = []
    metrics = manifest.get("metrics", {})
    keys = [f"{name}/{rt}" for name, per_rt in metrics.items() if name != REFERENCE for rt in per_rt]
    picked = subjects(keys, select)
    if "size_mb" in limits:
        names = list(dict.fromkeys(k.split("/")[0] for k in picked)) if select else \
            [a["name"] for a in manifest.get("artifacts", [])]
        sizes = {a["name"]: a["bytes"] for a in manifest.get("artifacts", [])}
        for name in names:
            checks.append(_limit_check("size_mb", name, sizes[name] / 1e6, limits["size_mb"], "MB", True, "size"))
    for key in picked:
        name, rt = key.split("/", 1)
        m = metrics[name][rt]
        if "accuracy_drop_max" in limits:
            checks.append(_limit_check("accuracy_drop_max", key, m.get("drop"), limits["accuracy_drop_max"], "",
                                       True, f"{m.get('metric', 'metric')} drop"))
        if "fidelity_min" in limits:
            cos = m.get("parity", {}).get("cosine_mean")
            checks.append(_limit_check("fidelity_min", key, cos, limits["fidelity_min"], "", False, "mean cosine"))
    return checks

