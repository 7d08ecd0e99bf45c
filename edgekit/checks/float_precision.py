"""Float artifacts on the CPU classes a recipe declares: what is checked, and how it is recorded.

No integer kernel computes a float artifact, so QEMU has nothing class-specific to reproduce
for it; what a class can change is the precision its runtime computes in (OpenVINO: bf16 on AMX
and AVX-512 BF16, f32 elsewhere). Each such precision is forced and checked natively instead.
Three callers do that on different data — `compress` of encoders (samples), `compress` of
language models (windows) and `verify --cpu` — and share the plan, the check that the runtime
ran what was asked, and the wording of the record kept here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

# keys of a native record that name where it ran (replaced in a forced-precision record)
_WHERE = ("cpu_class", "mode", "cpu_model", "cpu_flags")


@dataclass(frozen=True)
class Check:
    cls: str
    precision: Optional[str]  # None: as stored
    covered: bool  # the native run on this machine computed that precision already


def plan(runtime: str, options: Mapping[str, Any], classes: list[str], here: Optional[str],
         ran_here: Optional[str]) -> list[Check]:
    """Each (class, precision) to record for a float artifact on `runtime`. `here` is this
    machine's class, whose check at the precision it ran (`ran_here`) the native record already
    is (None: every pair is listed)."""
    from edgekit.runtimes.cpu_classes import float_precisions

    out = []
    for cls in classes:
        for prec in float_precisions(runtime, cls, options) or (None,):
            covered = prec is None or prec == ran_here
            if not (cls == here and covered):
                out.append(Check(cls, prec, covered))
    return out


def at(check: Check, stored: str) -> str:
    return check.precision or f"{stored} as stored"


def ran_instead(runner: Any, runtime: str, asked: str) -> Optional[str]:
    """Why a runner opened with precision `asked` does not check it (e.g. bf16 asked of a CPU
    without it: the runtime silently computes another), or None when it ran as asked."""
    from edgekit.runtimes import ov

    ran = ov.type_name((getattr(runner, "details", None) or {}).get("inference_precision", asked))
    return None if ran == asked else f"{runtime} ran {ran} when asked for {asked}"


def cannot_compute(artifact: str, runtime: str, check: Check, why: str) -> str:
    return (f"{artifact} on {runtime}: {check.cls} may run it at {check.precision}, which this machine cannot "
            f"compute ({why}); verify it on such a {check.cls} CPU")


def not_emulated(artifact: str, stored: str, runtime: str, check: Check) -> dict[str, Any]:
    where = at(check, stored)
    return {"artifact": artifact, "runtime": runtime, "class": check.cls, "precision": where,
            "reason": f"{stored} artifact: no integer kernel computes it, so QEMU has nothing class-specific to "
                      f"reproduce; {runtime} may run it at {where} on {check.cls}, verified natively at that precision"}


def record(entry: Mapping[str, Any], check: Check, stored: str, here: str) -> dict[str, Any]:
    """A verification entry for `check.cls` made from a native measurement on this machine."""
    where = at(check, stored)
    return {**{k: v for k, v in entry.items() if k not in _WHERE}, "cpu_class": check.cls,
            "mode": "native-precision", "cpu_model": f"this {here} host, at {where}", "precision": where}
