"""Every runnable example runs end to end (from the repository root, as the README says)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_custom_model_example(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    result = cli("compress", "--recipe", "examples/custom_model/recipe.yaml", "--out", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "custom-mlp-int8" / "manifest.json").read_text())
    assert m["metrics"]["reference"]["value"] > 0.9
    assert m["metrics"]["int8"]["onnxruntime"]["drop"] <= 0.01
    assert m["data"]["evaluation"]["samples"] == 540
    assert os.path.isfile(tmp_path / "custom-mlp-int8" / "models" / "int8.onnx")
