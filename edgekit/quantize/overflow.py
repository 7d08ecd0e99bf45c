"""The INT8 overflow fix for the CPU classes a recipe deploys to, shared by the ONNX Runtime
quantizers (quantize.int8, quantize.dynamic).

On x86 without VNNI (class x86-avx2) ONNX Runtime's u8 x s8 kernels add pairs of products into a
saturating int16, and full-range int8 weights overflow it (the digits CNN falls from top-1 0.99
to 0.86 there, from the same file). Two fixes exist: 7-bit weights (`reduce_range`: a pair is at
most 2*255*64 = 32640, so nothing can saturate on any CPU, and the fix lives in the file) and ONNX
Runtime's session option `session.x64quantprecision=1` (`runtime`: full-range weights, computed
as u8 x u8; only ONNX Runtime honours it, so it is stored with the artifact's runtime options,
and edgekit's runners apply it only on CPUs without AVX-512 VNNI, since ONNX Runtime itself
would take the slower u8 x u8 path on every x86 CPU: device_side.ONLY_WITHOUT_VNNI).
benchmarks/cpu_classes.py measures both per model and class.

A third, `reduce_range_dw8`, keeps 8-bit weights in depthwise convolutions (one input and one
output channel per group) and 7 bits elsewhere: both runtimes compute those in wider integers
(ONNX Runtime's depthwise kernels widen each product to 16 bits and add pairs into 32), so
they cannot saturate, and depthwise weights are where 7 bits cost most (few weights per output
channel). Measured, not read: a 3x3 to 7x7 depthwise conv with every weight 127 and every input
255 gives the exact sum natively and under qemu Haswell and Nehalem on ONNX Runtime and
OpenVINO, while a dense conv, a group of two channels and a depthwise conv with two outputs per
channel saturate under Haswell (tests/test_quantize_overflow.py runs it where qemu is
installed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# ONNX Runtime's session option that computes u8 x s8 as u8 x u8 on x86 without VNNI
X64_QUANT_PRECISION = {"session.x64quantprecision": "1"}
# what `overflow_fix: auto` uses when a deploy class saturates (benchmarks/cpu_classes.py)
AUTO_FIX = "reduce_range"
DW8 = "reduce_range_dw8"  # 7-bit weights except in depthwise convolutions


@dataclass
class OverflowChoice:
    """What a quantizer did about int16 saturation, and why: goes into the stage record."""

    fix: str  # none | reduce_range | reduce_range_dw8 | runtime
    reduce_range: bool
    ort_options: dict[str, Any]
    reason: str
    cpus: list[str]
    # weight initializers that keep 8 bits under reduce_range (reduce_range_dw8's depthwise ones)
    full_range_weights: list[str] = field(default_factory=list)

    @property
    def runner_options(self) -> dict[str, Any]:
        """Options for ONNX Runtime runners of what was quantized with this choice."""
        return {"session_config": dict(self.ort_options)} if self.ort_options else {}

    def record(self) -> dict[str, Any]:
        out = {"weight_bits": 7 if self.reduce_range else 8, "overflow_fix": self.fix,
               "overflow_fix_reason": self.reason, "deploy_cpus": self.cpus}
        if self.fix == DW8:
            out["full_range_weights"] = list(self.full_range_weights)
        return out


def deploy_classes(state: Any) -> list[str]:
    from edgekit.runtimes.cpu_classes import X86_CLASSES

    return state.recipe.deploy.classes() if getattr(state, "recipe", None) is not None else list(X86_CLASSES)


def saturation_problem(fix: str, weight_dtype: str, classes: list[str], dtype_field: str,
                       fixes: str = "auto, reduce_range, runtime") -> Optional[str]:
    """Why these settings saturate on one of `classes`, or None (checked at validate time)."""
    from edgekit.runtimes.cpu_classes import SATURATING

    bad = [c for c in classes if c in SATURATING]
    if fix == "none" and weight_dtype == "int8" and bad:
        return (f"overflow_fix 'none' with full-range int8 weights saturates int16 on {', '.join(bad)} "
                f"(u8 x s8 pairs reach 2*255*127 > 32767); allowed there: {fixes}, or {dtype_field} uint8")
    return None


def choose_overflow_fix(fix: str, weight_dtype: str, classes: list[str], auto: str = AUTO_FIX) -> OverflowChoice:
    """`auto` is what `overflow_fix: auto` becomes where a class saturates: 7-bit weights for
    static INT8 (per-channel: measured within 0.2 points), the run-time option for dynamic INT8,
    whose per-tensor 7-bit weights cost MiniLM 0.09 cosine (0.874 vs 0.963, quantize_ort)."""
    from edgekit.runtimes.cpu_classes import SATURATING

    bad = [c for c in classes if c in SATURATING]
    if weight_dtype == "uint8" and fix == "auto":
        fix, reason = "none", "U8U8: ONNX Runtime's u8 x u8 kernels widen to int16 before adding; nothing saturates"
    elif fix == "auto" and not bad:
        fix, reason = "none", f"no class in deploy.cpus ({', '.join(classes)}) saturates u8 x s8 pairs"
    elif fix == "auto":
        fix = auto
        reason = (f"deploy.cpus includes {', '.join(bad)}, where u8 x s8 pairs of full-range int8 weights saturate "
                  "int16; " + ("7-bit weights cannot (2*255*64 < 32767) and need nothing at run time"
                               if fix == "reduce_range" else
                               "ONNX Runtime's session.x64quantprecision=1 computes them as u8 x u8 there"))
    else:
        reason = f"overflow_fix {fix!r} set in the recipe"
    return OverflowChoice(fix, fix in ("reduce_range", DW8), dict(X64_QUANT_PRECISION) if fix == "runtime" else {},
                          reason, list(classes))
