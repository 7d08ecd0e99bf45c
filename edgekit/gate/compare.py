"""Is the candidate slower than the base? A pure decision over rounds of latency samples.

The unit of evidence is a round (a short block of timed runs), not a single run: runs within a
block share the machine's state of the moment, so a rank test over thousands of raw samples
would call any drift significant. The rule, in the manner of Google Benchmark's compare.py
plus a noise floor:

- effect  = median(candidate) / median(base) - 1, over all samples;
- noise   = the A/A effect: the same ratio between two halves of one side's rounds (even vs odd,
            first vs second half), the largest (what the machine does to one model by itself);
- p       = one-sided Mann-Whitney U over the per-round medians (candidate greater);
- cv      = coefficient of variation of the per-round medians, the larger side.

fail when p < alpha and effect - noise >= min_effect (slower beyond the noise); otherwise
inconclusive when noise >= min_effect or cv > max_cv (too noisy to clear the candidate) or when
effect + noise >= min_effect (too close to call); pass otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgekit.gate import Status

MIN_ROUNDS = 6  # A/A halves of three rounds; smallest one-sided MWU p is then 1/924


@dataclass(frozen=True)
class Comparison:
    effect: float
    noise: float
    p_value: float
    cv: float
    base_median_ms: float
    candidate_median_ms: float
    rounds: tuple[int, int]
    status: Status
    reason: str


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(a) / np.median(b) - 1.0)


def _aa_noise(rounds: Sequence[np.ndarray]) -> float:
    """Two A/A splits of one model's rounds: even vs odd (noise between neighbouring rounds) and
    first vs second half (drift, or a burst spanning adjacent blocks, which the alternating
    order puts in one even and one odd round of the same side)."""
    half = len(rounds) // 2
    splits = [(rounds[0::2], rounds[1::2]), (rounds[:half], rounds[half:])]
    return max(abs(_ratio(np.concatenate(a), np.concatenate(b))) for a, b in splits)


def _cv(medians: np.ndarray) -> float:
    mean = float(medians.mean())
    return float(medians.std(ddof=1) / mean) if mean > 0 else float("inf")


def chunk(samples: Sequence[float], rounds: int) -> list[np.ndarray]:
    """Contiguous blocks of a single measurement, standing in for rounds when a baseline was
    measured in another job (there is no interleaving to recover)."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < rounds:
        raise ValueError(f"{len(x)} samples cannot form {rounds} rounds")
    return list(np.array_split(x, rounds))


def compare(base_rounds: Sequence[Sequence[float]], cand_rounds: Sequence[Sequence[float]],
            min_effect: float = 0.10, alpha: float = 0.05, max_cv: float = 0.25) -> Comparison:
    from scipy.stats import mannwhitneyu

    base = [np.asarray(r, dtype=np.float64) for r in base_rounds]
    cand = [np.asarray(r, dtype=np.float64) for r in cand_rounds]
    if min(len(base), len(cand)) < MIN_ROUNDS:
        raise ValueError(f"need at least {MIN_ROUNDS} rounds per side, got {len(base)} and {len(cand)}")
    if any(len(r) == 0 for r in base + cand):
        raise ValueError("every round needs at least one sample")
    b_all, c_all = np.concatenate(base), np.concatenate(cand)
    b_med = np.array([np.median(r) for r in base])
    c_med = np.array([np.median(r) for r in cand])
    effect = _ratio(c_all, b_all)
    noise = max(_aa_noise(base), _aa_noise(cand))
    p = float(mannwhitneyu(c_med, b_med, alternative="greater").pvalue)
    cv = max(_cv(b_med), _cv(c_med))
    pct = f"{effect:+.1%} median (A/A noise {noise:.1%}, p={p:.3g}, round CV {cv:.1%})"
    if p < alpha and effect - noise >= min_effect:
        status: Status = "fail"
        reason = f"slower: {pct}; beyond the {min_effect:.0%} minimum effect plus noise"
    elif noise >= min_effect:
        status, reason = "inconclusive", f"too noisy: A/A differs by {noise:.1%} >= the {min_effect:.0%} minimum effect; {pct}"
    elif cv > max_cv:
        status, reason = "inconclusive", f"too noisy: round CV {cv:.1%} > {max_cv:.0%}; {pct}"
    elif effect + noise >= min_effect:
        status, reason = "inconclusive", f"too close to call: {pct} against a {min_effect:.0%} minimum effect"
    else:
        status, reason = "pass", f"{pct}; below the {min_effect:.0%} minimum effect"
    return Comparison(effect=effect, noise=noise, p_value=p, cv=cv, base_median_ms=float(np.median(b_all)),
                      candidate_median_ms=float(np.median(c_all)), rounds=(len(base), len(cand)),
                      status=status, reason=reason)
