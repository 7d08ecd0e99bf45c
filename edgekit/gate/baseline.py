"""`--baseline profile.json`: the current profile against one measured earlier, key by key.

Two measurements are comparable only when `edgekit.profile.schema.baseline_key` agrees (same
model file, runtime and device fingerprint); a mismatch is a usage error, never a verdict. The
baseline ran in another job, so there are no interleaved rounds: each side's samples are cut
into contiguous blocks that stand in for rounds (see `compare.chunk`), which makes the A/A noise
an under-estimate of the drift between jobs — `--ab` is the stronger test on shared runners."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgekit.errors import UsageError
from edgekit.gate import Check
from edgekit.gate.budgets import subjects
from edgekit.gate.compare import chunk, compare
from edgekit.profile.schema import Profile, baseline_key

BLOCKS = 10


def check_baseline(current: Profile, baseline: Profile, baseline_path: Path, min_effect: float,
                   alpha: float, max_cv: float, select: Optional[list[str]] = None) -> tuple[list[Check], list[str]]:
    """Checks, plus notes naming the current keys the baseline does not have."""
    keys = subjects(list(current.measurements), select)
    common = [k for k in keys if k in baseline.measurements]
    if not common:
        raise UsageError(f"--baseline {baseline_path}: no measurement in common with the current profile "
                         f"(current: {', '.join(keys) or 'none'}; baseline: {', '.join(baseline.measurements) or 'none'})")
    checks = []
    for key in common:
        cur, base = current.measurements[key], baseline.measurements[key]
        kc, kb = baseline_key(cur), baseline_key(base)
        if kc != kb:
            diff = "; ".join(f"{f} {b!r} vs {c!r}" for f, b, c in zip(kc._fields, kb, kc) if b != c)
            raise UsageError(f"--baseline {baseline_path}: {key} was measured on something else, refusing to "
                             f"compare: {diff} (baseline vs current)")
        for label, m in (("baseline", base), ("current", cur)):
            if len(m.samples_ms) < BLOCKS:
                raise UsageError(f"{label} profile: {key} has {len(m.samples_ms)} raw samples; "
                                 f"the comparison needs at least {BLOCKS}")
        c = compare(chunk(base.samples_ms, BLOCKS), chunk(cur.samples_ms, BLOCKS), min_effect, alpha, max_cv)
        checks.append(Check("baseline", "median latency", key, c.status, c.candidate_median_ms,
                            c.base_median_ms * (1 + min_effect), "ms", c.reason))
    notes = [f"{k}: not in the baseline, not compared" for k in keys if k not in baseline.measurements]
    return checks, notes
