"""`target.tensorrt` end to end on the digits CNN: the lint runs on every machine; without a GPU
the engine is not built and the manifest says why; a QDQ graph TensorRT would refuse stops the
run with one line naming the node."""

from __future__ import annotations

import json

import pytest
import yaml

from edgekit.runtimes.registry import get
from edgekit.runtimes.tensorrt.runner import missing
from tests.conftest import RECIPES, fast_profile, write_recipe


@pytest.fixture
def trt_data() -> dict:
    data = fast_profile(yaml.safe_load((RECIPES / "tensorrt_digits.yaml").read_text()))
    data["data"]["evaluation"]["samples"] = 64
    return data


@pytest.mark.slow
def test_lint_runs_and_the_build_is_skipped_without_a_gpu(cli, tmp_path, trt_data):
    trt_data["targets"].append("onnxruntime-cuda")  # an execution provider that may not be here
    res = cli("compress", "--recipe", write_recipe(tmp_path, trt_data), "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / trt_data["name"] / "manifest.json").read_text())
    recs = [s for s in m["stages"] if s["kind"] == "target.tensorrt"]
    assert [r["measured"]["source"] for r in recs] == ["int8", "fp32"]
    assert all(r["measured"]["lint_errors"] == 0 for r in recs)
    cuda = get("onnxruntime-cuda").missing_here()
    cuda_skips = [s for s in m["skipped"] if s["runtime"] == "onnxruntime-cuda"]
    if cuda is not None:  # each ONNX artifact is listed with why and the offline findings
        assert {s["artifact"] for s in cuda_skips} == {"fp32", "int8"}
        assert all(s["reason"] == f"not here: {cuda}" and s["problems"] == [] for s in cuda_skips)
    else:
        assert not cuda_skips
    why = missing()
    if why is None:  # a GPU box: engines built, verified and profiled on TensorRT
        names = {a["name"] for a in m["artifacts"] if a["format"] == "tensorrt"}
        assert names == {"trt_int8", "trt_fp16"}
    else:
        assert all(not r["measured"]["built"] and why in r["measured"]["not_built"] for r in recs)
        assert not [a for a in m["artifacts"] if a["format"] == "tensorrt"]
        assert "no trt_int8 engine built here" in res.output


@pytest.mark.slow
def test_uint8_qdq_stops_the_build_naming_the_node(cli, tmp_path, trt_data):
    trt_data["stages"][1]["activations"] = {"dtype": "uint8"}
    res = cli("compress", "--recipe", write_recipe(tmp_path, trt_data), "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: target.tensorrt: int8 (int8.onnx) will not build: ")
    assert "uint8 Q/DQ" in line and "QuantizeLinear" in line and "symmetric: true" in line
    assert not (tmp_path / "out" / trt_data["name"]).exists()


def test_shape_range_is_checked(cli, tmp_path, trt_data):
    trt_data["stages"][2]["shapes"] = {"input": {"min": [1, 1, 32, 32], "opt": [4, 1, 32, 32], "max": [2, 1, 32, 32]}}
    res = cli("validate", write_recipe(tmp_path, trt_data))
    assert res.exit_code == 2
    assert "stages[2].shapes.input: need 1 <= min <= opt <= max in every dimension" in res.output


def test_tensorrt_stage_needs_tensorrt_among_targets(cli, tmp_path, trt_data):
    trt_data["targets"] = ["onnxruntime"]
    res = cli("validate", write_recipe(tmp_path, trt_data))
    assert res.exit_code == 2
    assert "stages[2] (target.tensorrt) makes artifacts that only tensorrt can run; add tensorrt to targets" in res.output
