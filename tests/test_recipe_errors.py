"""Golden one-line errors for bad recipes: exit code 2, the field path, the bad value and what
is allowed; and nothing written."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.conftest import write_recipe


def mutate(data: dict, fn) -> dict:
    data = copy.deepcopy(data)
    fn(data)
    return data


CASES = [
    (
        "unknown key with suggestion",
        lambda d: d["stages"][1]["activations"].update(percentil=99.9),
        "stages[1].activations: unknown key 'percentil' (did you mean 'percentile'?); allowed keys: "
        "granularity, dtype, symmetric, calibration, percentile",
    ),
    (
        "value out of range",
        lambda d: d["stages"][1]["activations"].update(percentile=101),
        "stages[1].activations.percentile: Input should be less than or equal to 100; got 101",
    ),
    (
        "bad literal",
        lambda d: d["stages"][1]["activations"].update(calibration="kl"),
        "stages[1].activations.calibration: got 'kl'; allowed: 'minmax', 'percentile'",
    ),
    (
        "unknown stage kind",
        lambda d: d["stages"][1].update(kind="quantize.int9"),
        "stages[1].kind: unknown stage kind 'quantize.int9' (did you mean 'quantize.int8'?)",
    ),
    (
        "unknown top-level key",
        lambda d: d.update(targts=["onnxruntime"]),
        "unknown key 'targts' (did you mean 'targets'?)",
    ),
    (
        "wrong type",
        lambda d: d["profile"].update(threads="two"),
        "profile.threads: Input should be a valid integer",
    ),
    (
        "schema version",
        lambda d: d.update(edgekit=2),
        "edgekit: got 2; allowed: 1",
    ),
    (
        "two model sources",
        lambda d: d["model"].update(onnx="m.onnx"),
        "model: give exactly one of python, onnx, hf, gguf (got ['python', 'onnx'])",
    ),
    (
        "bad regex",
        lambda d: d["stages"][1].update(exclude=["re:(["]),
        "stages[1].exclude: invalid regex '",
    ),
    (
        "onnx stage without export",
        lambda d: d["stages"].pop(0),
        "onnx-side stages need an 'export.onnx' stage",
    ),
    (
        "unknown target",
        lambda d: d.update(targets=["tflite"]),
        "targets[0]: got 'tflite'; allowed: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, onnxruntime-openvino, "
        "openvino, tensorrt",
    ),
]


@pytest.mark.parametrize("label,change,message", CASES, ids=[c[0] for c in CASES])
def test_validate_golden_errors(cli, tmp_path, int8_pc_data, label, change, message):
    path = write_recipe(tmp_path, mutate(int8_pc_data, change))
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith(f"error: {path}: "), line
    assert message in line
    assert "Traceback" not in result.output
    assert len(line.splitlines()) == 1


def test_compress_refuses_invalid_recipe_and_writes_nothing(cli, tmp_path, int8_pc_data):
    path = write_recipe(tmp_path, mutate(int8_pc_data, lambda d: d.update(targts=[])))
    out = tmp_path / "out"
    result = cli("compress", "--recipe", path, "--out", out)
    assert result.exit_code == 2
    assert not out.exists()


def test_missing_recipe_file(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.yaml'}: recipe file not found"


def test_invalid_yaml(cli, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("edgekit: 1\nname: [unclosed\n")
    result = cli("validate", p)
    assert result.exit_code == 2
    assert "invalid YAML" in result.output and str(p) in result.output


def test_not_a_mapping(cli, tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    result = cli("validate", p)
    assert result.exit_code == 2
    assert "the recipe must be a YAML mapping, got list" in result.output


# --- errors found while running: model, inputs, data; each exit 2 and no output dir -------------

RUN_CASES = [
    (
        "missing onnx model file",
        lambda d, tmp: (d.update(model={"onnx": "missing.onnx"}), d["stages"].pop(0)),
        "model.onnx: file not found: ",
    ),
    (
        "entrypoint does not import",
        lambda d, tmp: d.update(model={"python": "no_such_pkg.models:net"}),
        "model.python: cannot import 'no_such_pkg.models' from 'no_such_pkg.models:net': ModuleNotFoundError",
    ),
    (
        "entrypoint attribute missing",
        lambda d, tmp: d.update(model={"python": "edgekit.models.zoo:no_such_model"}),
        "model.python: module 'edgekit.models.zoo' has no attribute 'no_such_model'",
    ),
    (
        "input shape does not fit the model",
        lambda d, tmp: d.update(inputs=[{"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32"}]),
        "inputs: {'x': [1, 3, 32, 32]} do not fit model 'edgekit.models.zoo:digits_cnn'",
    ),
    (
        "builtin data does not fit the input",
        lambda d, tmp: d.update(inputs=[{"name": "x", "shape": [1, 1, 28, 28], "dtype": "float32"}]),
        "data.calibration: builtin digits gives samples of shape [1, 1, 32, 32] but input 'x' is [1, 1, 28, 28]",
    ),
    (
        "empty calibration set",
        lambda d, tmp: (
            np.savez(tmp / "empty.npz", x=np.zeros((0, 1, 32, 32), np.float32)),
            d["data"].update(calibration={"npz": str(tmp / "empty.npz")}),
        ),
        "data.calibration: the data source 'npz:empty.npz' yields no samples; at least 1 is needed",
    ),
    (
        "npz without the input's array",
        lambda d, tmp: (
            np.savez(tmp / "wrong.npz", y=np.zeros((4, 1, 32, 32), np.float32)),
            d["data"].update(calibration={"npz": str(tmp / "wrong.npz")}),
        ),
        "data.calibration.npz: wrong.npz has no array named ['x']; it has ['y']",
    ),
    (
        "two stages scanning sensitivity",
        lambda d, tmp: (
            d["stages"][1].update(sensitivity=True, name="int8a"),
            d["stages"].append({"kind": "quantize.int8", "name": "int8b", "sensitivity": True}),
        ),
        "stages[2].sensitivity: an earlier stage already scanned sensitivity into sensitivity.json; "
        "allowed: one quantize stage with sensitivity or accuracy_aware per recipe",
    ),
    (
        "exclude pattern that matches no node",
        lambda d, tmp: d["stages"][1].update(exclude=["re:.*classifer.*"]),
        "stages[1].exclude: pattern 're:.*classifer.*' matches no node of the graph",
    ),
]


@pytest.mark.parametrize("label,change,message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
@pytest.mark.slow
def test_compress_golden_errors(cli, tmp_path, int8_pc_data, label, change, message):
    data = copy.deepcopy(int8_pc_data)
    change(data, tmp_path)
    path = write_recipe(tmp_path, data)
    out = tmp_path / "out"
    result = cli("compress", "--recipe", path, "--out", out, "--quiet")
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists(), list(out.rglob("*"))


def test_data_splits_default_apart(int8_pc_data):
    """Left out, calibration draws from train and evaluation from test: never the same images."""
    from edgekit.recipe import parse_recipe

    data = copy.deepcopy(int8_pc_data)
    for section in ("calibration", "evaluation"):
        data["data"][section].pop("split")
    recipe = parse_recipe(data)
    assert recipe.data.calibration.split == "train"
    assert recipe.data.evaluation.split == "test"
