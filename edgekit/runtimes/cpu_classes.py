"""CPU classes: the groups of CPUs on which an INT8 artifact computes the same numbers at about
the same relative speed, and how to tell which one a machine belongs to.

Why classes and not CPU models: what changes INT8 numerics is which integer dot-product
instruction the runtime's kernels pick. Without VNNI, x86 kernels multiply u8 x s8 and add
neighbouring pairs into a saturating int16 (`vpmaddubsw`), so full-range int8 weights can
overflow (2*255*127 > 32767); VNNI (`vpdpbusd`) and AMX accumulate in int32 and cannot; SSE4
kernels widen to int16 first and cannot either; arm64 uses sdot/udot (dotprod) or widening
multiplies. The digits CNN's U8S8 INT8 file loses about 12 points of top-1 on x86-avx2 and
nothing elsewhere (docs/cpu-classes.md, benchmarks/cpu_classes.py)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

X86_CLASSES = ("x86-sse", "x86-avx2", "x86-vnni", "x86-amx")
CLASSES = (*X86_CLASSES, "arm64")

DESCRIPTIONS = {
    "x86-sse": "x86-64 without AVX2 (SSE4 kernels)",
    "x86-avx2": "AVX2, or AVX-512 without VNNI: u8 x s8 products saturate int16 pairs",
    "x86-vnni": "AVX-512 VNNI or AVX-VNNI: int32 dot products",
    "x86-amx": "AMX tiles (Sapphire Rapids and later), with AVX-512 VNNI",
    "arm64": "AArch64; dotprod (sdot/udot) and i8mm noted per device",
}

# classes on which ONNX Runtime's u8 x s8 kernels saturate with full-range int8 weights
SATURATING = frozenset({"x86-avx2"})

# QEMU user-mode CPU models that run a program as a CPU of that class would (QEMU 7.2 emulates
# AVX2 but not AVX-512, so the VNNI and AMX classes can be verified only natively)
QEMU_MODELS = {"x86-avx2": "Haswell", "x86-sse": "Nehalem"}


def classify(info: Mapping[str, Any]) -> str:
    """The class of a machine from `cpu_info()` (its own or an ssh device's reply)."""
    arch = str(info.get("arch", "")).lower()
    flags = {k for k, on in (info.get("flags") or {}).items() if on}
    if arch in ("aarch64", "arm64"):
        return "arm64"
    if arch not in ("x86_64", "amd64", "i686", "x86"):
        return "unknown"
    if "amx_int8" in flags:
        return "x86-amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "x86-vnni"
    if "avx2" in flags:
        return "x86-avx2"
    return "x86-sse"


def arm_features(info: Mapping[str, Any]) -> list[str]:
    """The arm64 features that change int8 kernels: dotprod (asimddp) and i8mm."""
    flags = info.get("flags") or {}
    return [name for name, flag in (("dotprod", "asimddp"), ("i8mm", "i8mm")) if flags.get(flag)]


def local_class() -> str:
    from edgekit.runtimes.device_side import cpu_info

    return classify(cpu_info())


def describe(info: Mapping[str, Any]) -> str:
    """One phrase for tables and warnings: 'x86-vnni' or 'arm64 (dotprod, i8mm)'."""
    cls = classify(info)
    extra = arm_features(info) if cls == "arm64" else []
    return f"{cls} ({', '.join(extra)})" if extra else cls


FLOAT_PRECISIONS = ("fp32", "fp16")


def float_precisions(runtime: str, cls: str, options: Mapping[str, Any]) -> Optional[tuple[str, ...]]:
    """The precisions a CPU runtime may compute a float artifact in on a class, where the runtime
    decides it: OpenVINO's CPU plugin defaults to bf16 where the CPU has AMX or AVX-512 BF16 and
    to f32 elsewhere, unless the artifact fixes it. x86-vnni holds both kinds (Cascade Lake has no
    BF16; Cooper Lake and AMD Zen 4 have it, and OpenVINO 2026.4 picked bf16 on such an EPYC), so
    it may run either. None: as stored, on every class."""
    from edgekit.runtimes import ov

    if runtime != ov.NAME:
        return None
    if options.get("precision"):
        return (options["precision"],)
    return {"x86-amx": ("bf16",), "x86-vnni": ("f32", "bf16")}.get(cls, ("f32",))


def native_where() -> dict[str, Any]:
    """How a verification record names this machine: class, mode, CPU model and flags."""
    from edgekit.runtimes.device_side import cpu_info

    cpu = cpu_info()
    return {"cpu_class": describe(cpu), "mode": "native", "cpu_model": cpu["model"],
            "cpu_flags": sorted(f for f, on in cpu["flags"].items() if on)}
