"""Bad sweep files: one line naming the file, the field, the bad value and what is allowed,
exit 2, before anything runs (these tests never start Ray: validation comes first)."""

from __future__ import annotations

import pytest
import yaml

from edgekit.errors import RecipeError
from edgekit.sweep.spec import build_recipe, load_sweep
from tests.conftest import RECIPES


@pytest.fixture
def sweep_dir(tmp_path):
    (tmp_path / "base.yaml").write_text((RECIPES / "int8_pc.yaml").read_text())
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": {"edge": {"kind": "local"}}}))
    return tmp_path


def good() -> dict:
    return {"sweep": 1, "name": "s", "base": "base.yaml",
            "vary": {"stages[1].activations.calibration": ["minmax", "entropy"],
                     "targets": [["onnxruntime"], ["openvino"]]},
            "objective": {"minimize": "latency_p90_ms", "accuracy_drop_max": 0.01}}


def write(d, data) -> str:
    p = d / "sweep.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(p)


def test_a_good_file_loads_and_builds_trial_recipes(sweep_dir):
    s = load_sweep(write(sweep_dir, {**good(), "set": {"profile.min_iters": 8}}))
    assert s.space_size() == 4 and list(s.devices) == ["local"]
    tr = build_recipe(s, {"stages[1].activations.calibration": "entropy", "targets": ["openvino"]})
    assert tr.error is None
    assert tr.recipe.stages[1].activations.calibration == "entropy"
    assert tr.recipe.targets == ["openvino"] and tr.recipe.profile.min_iters == 8
    again = build_recipe(s, {"targets": ["openvino"], "stages[1].activations.calibration": "entropy"})
    assert again.sha256 == tr.sha256  # the order settings are given in does not change the trial


CASES = [
    ({"vary": {"stages[1].activations.calibrate": ["minmax"]}},
     "{f}: vary: 'stages[1].activations.calibrate' does not exist in the base recipe base.yaml: "
     "stages[1].activations has no field 'calibrate'; it has: granularity, dtype, symmetric, calibration, "
     "percentile"),
    ({"vary": {"stages[5].r": [8]}},
     "{f}: vary: 'stages[5].r' does not exist in the base recipe base.yaml: stages has 2 entries, so [5] does not exist"),
    ({"vary": {"stages[1].activations.calibration": ["minmax", "kl"]}},
     "{f}: vary.stages[1].activations.calibration[1] = 'kl' is refused: stages[1].activations.calibration: "
     "got 'kl'; allowed: 'minmax', 'percentile', 'entropy' or 'mse'"),
    ({"vary": {"targets": [["onnxruntime"], ["tflite"]]}},
     "{f}: vary.targets[1] = ['tflite'] is refused: targets[0]: got 'tflite'; allowed: {runtimes}"),
    ({"serach": {"method": "grid"}},
     "{f}: unknown key 'serach' (did you mean 'search'?); allowed keys: sweep, name, description, base, set, vary, "
     "devices, devices_file, objective, search"),
    ({"objective": {"minimise": "latency_p90_ms"}},
     "{f}: objective: unknown key 'minimise' (did you mean 'minimize'?); allowed keys: minimize, accuracy_drop_max, "
     "fidelity_min"),
    ({"objective": {"minimize": "speed"}},
     "{f}: objective.minimize: got 'speed'; allowed: 'latency_p90_ms', 'latency_p50_ms', 'latency_p99_ms' or 'size_mb'"),
    ({"search": {"method": "grid", "trials": 3}},
     "{f}: search: grid tries every combination; trials: 3 would cap it silently (use method: random to try a sample)"),
    ({"search": {"method": "random", "trials": 9}},
     "{f}: search.trials: 9 is more than the 4 distinct settings vary allows; use method: grid to try them all"),
    ({"search": {"method": "tpe"}}, "{f}: search: method tpe needs trials: N"),
    ({"devices": ["local", "pi"]}, "{f}: devices[1]: 'pi' is not defined (no devices_file given); defined: local"),
    ({"devices": ["pi"], "devices_file": "devices.yaml"},
     "{f}: devices[0]: 'pi' is not defined in devices.yaml; defined: local, edge"),
    ({"set": {"profile.min_iters": 0}},
     "{f}: set: profile.min_iters: Input should be greater than or equal to 1; got 0 (the base recipe with set applied)"),
    ({"set": {"targets": ["onnxruntime"]}}, "{f}: vary: 'targets' is also in set; give it in one of them"),
    ({"vary": {"stages[1].activations.calibration": []}},
     "{f}: vary: stages[1].activations.calibration: give at least one value"),
    ({"base": "missing.yaml"}, "{f}: base: {d}/missing.yaml: recipe file not found"),
    ({"sweep": 2}, "{f}: sweep: got 2; allowed: 1"),
]


@pytest.mark.parametrize("change,expected", CASES)
def test_bad_sweep_files_are_one_golden_line_and_exit_2(cli, sweep_dir, change, expected):
    f = write(sweep_dir, {**good(), **change})
    result = cli("sweep", f, "--out", sweep_dir / "out")
    assert result.exit_code == 2, result.output
    from edgekit.runtimes.registry import names  # the runtime rows are a registry plugins extend

    runtimes = ", ".join(names(deployable=True))
    assert result.output.strip() == "error: " + expected.format(f=f, d=sweep_dir, runtimes=runtimes)
    assert not (sweep_dir / "out").exists()  # nothing ran, nothing was written


def test_not_a_mapping_and_bad_yaml(sweep_dir):
    p = sweep_dir / "sweep.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match=r"sweep.yaml: the sweep file must be a YAML mapping, got list$"):
        load_sweep(p)
    p.write_text("sweep: [1\n")
    with pytest.raises(RecipeError, match=r"sweep.yaml: line 2: invalid YAML"):
        load_sweep(p)
    with pytest.raises(RecipeError, match="sweep file not found"):
        load_sweep(sweep_dir / "nope.yaml")


def test_a_combination_the_schema_refuses_is_a_failed_trial_not_a_file_error(sweep_dir):
    """Each value alone is valid; together they may not be (quantize.dynamic makes artifacts only
    ONNX Runtime runs): that combination becomes a failed trial, the file itself is fine."""
    data = yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())
    data["stages"][1] = {"kind": "quantize.int8"}
    (sweep_dir / "base.yaml").write_text(yaml.safe_dump(data))
    s = load_sweep(write(sweep_dir, {**good(), "vary": {"stages[1].kind": ["quantize.int8", "quantize.dynamic"],
                                                       "targets": [["onnxruntime"], ["openvino"]]}}))
    bad = build_recipe(s, {"stages[1].kind": "quantize.dynamic", "targets": ["openvino"]})
    assert bad.recipe is None
    assert "stages[1] (quantize.dynamic) makes artifacts that only onnxruntime can run" in bad.error
    assert build_recipe(s, {"stages[1].kind": "quantize.dynamic", "targets": ["onnxruntime"]}).error is None


def test_validating_a_sweep_imports_neither_ray_nor_optuna():
    """The file is checked before the cluster exists; `import edgekit` stays light."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, edgekit.sweep, edgekit.cli\n"
            "from edgekit.sweep.spec import load_sweep\n"
            f"load_sweep({str(ROOT / 'examples' / 'sweep_digits.yaml')!r})\n"
            "print(sorted(m for m in ('ray', 'optuna', 'onnxruntime', 'openvino') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
