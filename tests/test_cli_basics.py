"""`stages`, `doctor`, `validate` and the promise that importing edgekit stays light."""

from __future__ import annotations

import subprocess
import sys

from edgekit.stages.registry import REGISTRY
from tests.conftest import RECIPES

HEAVY = ("onnxruntime", "openvino", "nncf", "tensorrt", "transformers", "torch_pruning")


def test_import_and_validate_import_no_backend():
    code = (
        "import sys, edgekit, edgekit.cli, edgekit.recipe as r, edgekit.stages.registry as s\n"
        f"r.load_recipe({str(RECIPES / 'int8_pc.yaml')!r})\n"
        "[i.load() for i in s.REGISTRY.values()]\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stages_lists_every_kind_with_extra(cli):
    result = cli("stages")
    assert result.exit_code == 0
    for kind, info in REGISTRY.items():
        assert kind in result.output
        for extra in info.extras:
            assert extra in result.output


def test_every_stage_config_forbids_unknown_keys():
    for info in REGISTRY.values():
        assert info.load().Config.model_config.get("extra") == "forbid", info.kind


def test_doctor_reports_backends_and_cpu(cli):
    result = cli("doctor")
    assert result.exit_code == 0
    for word in ("onnxruntime", "torch", "CPU:", "avx512_vnni", "GPU:"):
        assert word in result.output


def test_doctor_lists_what_edgekit_uses_with_the_extra_that_brings_it(cli):
    """The simplifier edgekit runs by default is onnxslim (from edgekit[onnx]); onnxsim is an
    option no extra installs, so doctor must not send anyone to an extra for it."""
    from edgekit.core.backends import EXTRA_MODULES, KNOWN

    result = cli("doctor")
    assert result.exit_code == 0
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert "edgekit[onnx]" in lines["onnxslim"] and "export.onnx" in lines["onnxslim"]
    assert "edgekit[" not in lines["onnxsim"] and "optional" in lines["onnxsim"]
    for extra, modules in EXTRA_MODULES.items():  # every extra's module is listed under that extra
        for module in modules:
            assert f"edgekit[{extra}]" in lines[KNOWN[module][0]], (extra, module)


def test_validate_lists_extras(cli):
    result = cli("validate", RECIPES / "int8_pc.yaml")
    assert result.exit_code == 0
    assert "needs onnx: installed" in result.output
