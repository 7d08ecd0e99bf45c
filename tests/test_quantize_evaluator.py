"""accuracy.evaluator: a user entrypoint `pkg.mod:fn(runner, dataset) -> float` judges every
artifact in the pipeline, and bad evaluators or recipes fail with one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.checks import evaluate
from edgekit.errors import DataError, RecipeError
from edgekit.recipe import parse_recipe
from edgekit.stages.state import Dataset

CALLS: list[int] = []


def negative_mse(runner, data) -> float:
    """A user evaluator: how close the first output is to the labels (higher is better)."""
    CALLS.append(len(data))
    out = np.concatenate([runner.run(s)[0] for s in data.samples])
    return -float(np.mean((out - data.labels) ** 2))


def returns_nan(runner, data):
    return float("nan")


class _Echo:
    def run(self, feeds):
        return [feeds["x"]]


def test_user_score_calls_the_entrypoint_with_runner_and_data():
    data = Dataset("d", [{"x": np.ones((1, 2), np.float32)}], np.ones((1, 2), np.float32), [0])
    spec = parse_recipe({"edgekit": 1, "name": "t", "model": {"onnx": "m.onnx"}, "stages": [{"kind": "quantize.int8"}],
                         "accuracy": {"evaluator": "test_quantize_evaluator:negative_mse"}}).accuracy
    fn = evaluate.load_evaluator(spec, data)
    assert evaluate.user_score(fn, _Echo(), data, spec.evaluator, "x") == 0.0


def test_a_non_finite_score_is_a_data_error_naming_the_evaluator():
    data = Dataset("d", [{"x": np.ones((1, 2), np.float32)}], None, [0])
    with pytest.raises(DataError, match=r"accuracy.evaluator: m:returns_nan returned nan for artifact 'int8'"):
        evaluate.user_score(returns_nan, _Echo(), data, "m:returns_nan", "artifact 'int8'")


def test_metric_and_evaluator_together_are_refused():
    with pytest.raises(RecipeError, match=r"accuracy: give metric or evaluator, not both"):
        parse_recipe({"edgekit": 1, "name": "t", "model": {"onnx": "m.onnx"}, "stages": [{"kind": "quantize.int8"}],
                      "accuracy": {"metric": "top1", "evaluator": "a.b:c"}})


def test_lower_is_better_evaluators_count_drops_upwards():
    assert evaluate.drop("pkg:err", 1.0, 1.5, higher=False) == 0.5
    assert evaluate.drop("pkg:score", 1.0, 0.75) == 0.25


def test_pipeline_scores_every_artifact_with_the_user_evaluator(tmp_path):
    pytest.importorskip("onnxruntime")
    import yaml
    from test_quantize_modes import _mlp

    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    _mlp(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 64)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=np.zeros((40, 32), np.float32))
    recipe = {"edgekit": 1, "name": "ev", "model": {"onnx": "m.onnx"},
              "inputs": [{"name": "x", "shape": [1, 64], "dtype": "float32"}],
              "data": {"calibration": {"npz": "d.npz", "samples": 16}, "evaluation": {"npz": "d.npz", "samples": 12}},
              "stages": [{"kind": "quantize.int8"}],
              "accuracy": {"evaluator": "test_quantize_evaluator:negative_mse", "max_drop": 0.5},
              "profile": {"enabled": False}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    CALLS.clear()
    res = run(load_recipe(tmp_path / "r.yaml"), tmp_path / "out")
    m = res.manifest["metrics"]
    assert CALLS == [12, 12, 12]  # the reference, fp32 and int8, each on the evaluation set
    assert m["reference"]["metric"] == "test_quantize_evaluator:negative_mse"
    got = m["int8"]["onnxruntime"]
    assert got["value"] < 0 and got["drop"] == pytest.approx(m["reference"]["value"] - got["value"])
