"""The runtime registry is the one place a runtime exists: a toy runtime registered here is a
valid recipe target and shows up in stages, validate, compress, inspect and profile; no module
outside edgekit/runtimes spells a runtime's name."""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import pytest

from edgekit.runtimes import registry
from edgekit.runtimes.ort import OrtRunner
from edgekit.runtimes.registry import Problem, RuntimeInfo
from tests.conftest import ROOT, fast_profile, write_recipe

CALLS: list[str] = []


class ToyRunner(OrtRunner):
    """ONNX Runtime under another name, counting its runs: proof the toy row was used."""

    def __init__(self, path: Path, threads: int, **options) -> None:
        super().__init__(path, threads, **options)
        self.runtime = "toy"

    def run(self, feeds):
        CALLS.append(self.runtime)
        return super().run(feeds)


def toy_check(path: Path) -> list[Problem]:
    return [Problem("toy", "toys never run Softmax", "Softmax", "sm", 3, "remove it")]


@pytest.fixture
def toy():
    info = registry.register(RuntimeInfo(
        name="toy", where=f"{__name__}:ToyRunner", formats=("onnx",), extra="onnx", summary="a toy runtime for tests",
        compatibility=f"{__name__}:toy_check"))
    CALLS.clear()
    yield info
    registry.unregister("toy")


def test_unknown_runtime_names_the_closest(cli, tmp_path, int8_pc_data, toy):
    int8_pc_data["targets"] = ["onnxruntime", "toyy"]
    res = cli("validate", write_recipe(tmp_path, int8_pc_data))
    assert res.exit_code == 2
    assert "targets[1]: got 'toyy' (did you mean 'toy'?); allowed: " in res.output and "toy" in res.output.split("allowed:")[1]


def test_get_refuses_unknown_runtime_in_one_line():
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match=r"^runtime 'onnxruntim': unknown runtime \(did you mean 'onnxruntime'\?\); allowed: "):
        registry.get("onnxruntim")


def test_problem_line_names_node_position_why_and_fix(toy):
    (p,) = toy.check(Path("any.onnx"))
    assert p.line() == "toy: node 3 'sm' (Softmax): toys never run Softmax; fix: remove it"


@pytest.mark.slow
def test_toy_runtime_everywhere(cli, tmp_path, int8_pc_data, toy):
    res = cli("stages")
    assert res.exit_code == 0 and "toy" in res.output and "a toy runtime" in res.output

    data = fast_profile(int8_pc_data)
    data["targets"] = ["onnxruntime", "toy"]
    recipe = write_recipe(tmp_path, data)
    res = cli("validate", recipe)
    assert res.exit_code == 0, res.output

    res = cli("compress", "--recipe", recipe, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / data["name"]
    manifest = json.loads((out / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        assert "toy" in art["runs_on"]
        assert any(v["runtime"] == "toy" and v["passed"] for v in art["verified_on"])
    assert {f"{a['name']}/toy" for a in manifest["artifacts"]} <= set(manifest["profile"])
    assert CALLS and set(CALLS) == {"toy"}

    res = cli("inspect", out)
    assert res.exit_code == 0 and "toy" in res.output

    CALLS.clear()
    res = cli("profile", out, "--backend", "toy", "--output", tmp_path / "p.json", "--min-duration", "0.05",
              "--min-iters", "4", "--warmup", "0")
    assert res.exit_code == 0, res.output
    prof = json.loads((tmp_path / "p.json").read_text())
    assert all(m["runtime"] == "toy" for m in prof["measurements"].values()) and CALLS


def _runtime_literals(path: Path, names: set[str]) -> list[str]:
    """String literals equal to a runtime name, except where they name a Python package (the
    argument of require/version_of/is_available): a package and a runtime may share a name."""
    found = []
    toks = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    for i, tok in enumerate(toks):
        if tok.type != tokenize.STRING or tok.string[0] not in "'\"":
            continue
        try:
            value = eval(tok.string)  # a plain literal: its value
        except Exception:
            continue
        if value in names:
            before = [t.string for t in toks[max(0, i - 2):i]]
            if before[-1:] == ["("] and before[0] in ("require", "version_of", "is_available", "import_module"):
                continue
            if before == ["extra", "="]:  # an edgekit extra, named for the package it installs
                continue
            found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    return found


def test_no_runtime_name_spelled_outside_runtimes():
    names = set(registry.names())
    # core/backends.py and artifact/environment.py list Python packages (onnxruntime, openvino, tensorrt), not runtimes
    skip = {ROOT / "edgekit" / "core" / "backends.py", ROOT / "edgekit" / "artifact" / "environment.py"}
    found = [hit for p in sorted((ROOT / "edgekit").rglob("*.py"))
             if "runtimes" not in p.relative_to(ROOT / "edgekit").parts[:1] and p not in skip
             for hit in _runtime_literals(p, names)]
    assert not found, "runtime names spelled outside edgekit/runtimes: " + "; ".join(found)


def test_every_builtin_row_opens_what_it_claims():
    for name, info in registry.REGISTRY.items():
        assert info.runner_class().__name__, name
        assert info.formats, name
        if info.hardware == "cpu" and info.unavailable is None:
            assert info.missing_here() is None, name


def test_ort_check_names_a_node_without_kernel(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r"),
                           helper.make_node("NoSuchOp", ["y"], ["z"], name="bad", domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(m, tmp_path / "m.onnx")
    problems = registry.get("onnxruntime").check(tmp_path / "m.onnx")
    assert [(p.node, p.position, p.op_type) for p in problems] == [("bad", 1, "NoSuchOp")]
    assert "no CPUExecutionProvider kernel for com.example::NoSuchOp" in problems[0].why


def test_accelerator_target_without_hardware_is_skipped_with_a_note(tmp_path, int8_pc_data):
    """`targets: [onnxruntime, onnxruntime-cuda]` on a machine without CUDA validates and the
    extra check does not ask for a GPU wheel."""
    from edgekit.recipe import load_recipe, required_extras

    int8_pc_data["targets"] = ["onnxruntime", "onnxruntime-cuda"]
    loaded = load_recipe(write_recipe(tmp_path, int8_pc_data))
    assert required_extras(loaded.recipe).count("onnx") == 1
    why = registry.get("onnxruntime-cuda").missing_here()
    if why is not None:
        assert "CUDAExecutionProvider" in why


def test_openvino_check_reads_the_model_and_asks_the_cpu_plugin(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def save(name, node, domain_opsets=()):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), *domain_opsets]), tmp_path / name)
        return tmp_path / name

    ok = save("ok.onnx", helper.make_node("Relu", ["x"], ["y"], name="r"))
    assert registry.get("openvino").check(ok) == []
    bad = save("bad.onnx", helper.make_node("NoSuchOp", ["x"], ["y"], name="odd", domain="com.example"),
               [helper.make_opsetid("com.example", 1)])
    (p,) = registry.get("openvino").check(bad)
    assert p.target == "openvino" and p.why.startswith("cannot read the model: ") and "NoSuchOp" in p.why


def test_every_unavailable_function_takes_the_row():
    """`missing_here` passes the row (one function serves every execution-provider row)."""
    for name, info in registry.REGISTRY.items():
        why = info.missing_here()
        assert why is None or isinstance(why, str), name


def test_profile_a_bare_openvino_ir_uses_its_own_shapes(cli, tmp_path):
    """A .xml goes to the openvino row, whose example_feeds reads the IR's input shapes."""
    import json

    import onnx
    import openvino as ov
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    ov.save_model(ov.convert_model(str(tmp_path / "m.onnx")), str(tmp_path / "m.xml"))
    res = cli("profile", tmp_path / "m.xml", "-o", tmp_path / "p.json", "--min-duration", "0", "--min-iters", "4",
              "--warmup", "0")
    assert res.exit_code == 0, res.output
    (m,) = json.loads((tmp_path / "p.json").read_text())["measurements"].values()
    assert m["runtime"] == "openvino" and m["model"]["format"] == "openvino"
