"""CPU classes: detection from cpu_info() replies (this machine's and ssh devices')."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import pytest

from edgekit.runtimes.cpu_classes import CLASSES, SATURATING, classify, describe, local_class

X86_FLAGS = ["sse4_2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "avx_vnni"]


def info(arch: str, *flags: str) -> dict:
    return {"arch": arch, "model": "test", "flags": {f: True for f in flags}}


def test_known_machines():
    # the three machines seen here, and an arm64 board
    assert classify(info("x86_64", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8")) == "x86-amx"
    assert classify(info("x86_64", "avx2", "avx512f", "avx512_vnni", "avx512_bf16")) == "x86-vnni"
    assert classify(info("x86_64", "sse4_2", "avx2")) == "x86-avx2"
    assert classify(info("x86_64", "avx2", "avx512f")) == "x86-avx2"  # Skylake-X: AVX-512 without VNNI
    assert classify(info("x86_64", "avx2", "avx_vnni")) == "x86-vnni"  # Alder Lake: AVX-VNNI
    assert classify(info("x86_64", "sse4_2")) == "x86-sse"
    assert describe(info("aarch64", "asimd", "asimddp", "i8mm")) == "arm64 (dotprod, i8mm)"
    assert classify(info("riscv64")) == "unknown"


@given(st.sets(st.sampled_from(X86_FLAGS)))
def test_x86_class_follows_the_strongest_int8_instruction(flags):
    cls = classify(info("x86_64", *flags))
    assert cls in CLASSES
    if "amx_int8" in flags:
        assert cls == "x86-amx"
    elif flags & {"avx512_vnni", "avx_vnni"}:
        assert cls == "x86-vnni"
    # only the class without int32 dot products saturates u8 x s8 pairs
    assert (cls in SATURATING) == (cls == "x86-avx2")


@given(st.sets(st.sampled_from(X86_FLAGS + ["asimddp", "i8mm"])))
def test_arm64_is_arm64_whatever_the_flags(flags):
    assert classify(info("aarch64", *flags)) == "arm64"


def test_this_machine_has_a_class():
    assert local_class() in CLASSES


def test_doctor_names_the_class(cli):
    result = cli("doctor")
    assert result.exit_code == 0
    assert f"CPU class: {local_class()}" in result.output
    assert "emulated verification:" in result.output


def test_float_precisions_per_class_are_openvinos_defaults_unless_the_artifact_fixes_them():
    from edgekit.runtimes.cpu_classes import float_precisions

    # x86-vnni holds CPUs with AVX-512 BF16 (Zen 4, Cooper Lake: bf16) and without (Cascade Lake: f32)
    assert [float_precisions("openvino", c, {}) for c in ("x86-sse", "x86-avx2", "x86-vnni", "x86-amx")] == \
        [("f32",), ("f32",), ("f32", "bf16"), ("bf16",)]
    assert float_precisions("openvino", "x86-amx", {"precision": "f32"}) == ("f32",)
    assert float_precisions("onnxruntime", "x86-amx", {}) is None  # as stored, on every class


def test_this_machines_openvino_default_precision_is_read_from_the_plugin():
    pytest.importorskip("openvino")
    from edgekit.runtimes.cpu_classes import float_precisions
    from edgekit.runtimes.ov import default_precision

    assert default_precision() in float_precisions("openvino", local_class(), {})


def test_cpuid_overrules_a_cpuinfo_file_that_describes_another_cpu(monkeypatch):
    from edgekit.runtimes import device_side

    host = {"sse4_2", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "avx_vnni"}
    monkeypatch.setattr(device_side.platform, "machine", lambda: "x86_64")
    # an emulated Haswell under a Sapphire Rapids host's /proc/cpuinfo: AMX and AVX-VNNI go too
    monkeypatch.setattr(device_side, "_cpuid", lambda: {"SSE2": True, "SSE42": True, "AVX2": True})
    assert device_side._as_cpuid_says(set(host)) == {"sse4_2", "avx2"}
    # the file and CPUID agree: flags numpy cannot check are kept
    monkeypatch.setattr(device_side, "_cpuid", lambda: {"SSE2": True, "SSE42": True, "AVX2": True, "AVX512F": True,
                                                        "AVX512VNNI": True})
    assert device_side._as_cpuid_says(set(host)) == host
    # numpy that cannot tell: the file as it is
    monkeypatch.setattr(device_side, "_cpuid", lambda: {})
    assert device_side._as_cpuid_says(set(host)) == host


@pytest.mark.parametrize("model,cls", [("Haswell", "x86-avx2"), ("Nehalem", "x86-sse")])
def test_an_emulated_cpu_classes_itself_as_the_cpu_qemu_emulates(model, cls):
    import subprocess
    import sys

    from edgekit.checks.emulate import qemu_binary

    if qemu_binary() is None:
        pytest.skip("qemu-user not installed (apt-get install qemu-user)")
    code = "from edgekit.runtimes.cpu_classes import local_class; print(local_class())"
    out = subprocess.run([qemu_binary(), "-cpu", model, sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split()[-1] == cls
