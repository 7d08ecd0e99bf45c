"""Tiny random causal LMs on disk, for tests that need a real Hugging Face directory but cannot
download one: the config of a named family at toy size, seeded random weights, and a byte-level
BPE tokenizer trained here on the standard library's own source (text that is always present)."""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path
from typing import Any

SPECIAL = "<|endoftext|>"

# toy sizes; hidden and intermediate are multiples of 128 so that group-wise INT4 (block 32..128)
# covers every MatMul, as it would on a real model
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, max_position_embeddings=256)

# family -> (config class name, model class name); the family's own config keys where they differ
FAMILY_CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
}
FAMILY_EXTRA: dict[str, dict[str, Any]] = {
    "gemma": dict(head_dim=32),
    "gemma3_text": dict(head_dim=32, sliding_window=64),
    "qwen3": dict(head_dim=32),
    # a short-context Phi-3 (like Phi-3-mini-4k): the builder takes max != original as long-RoPE
    "phi3": dict(original_max_position_embeddings=256),
    "gpt2": dict(n_embd=128, n_layer=2, n_head=4, n_positions=256),
}


def _corpus(files: int = 60) -> list[str]:
    """~60 stdlib modules, sorted so that every process trains on the same text."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 4000)[:files]
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


# the split of Qwen2's tokenizer (and, near enough, Llama 3's): transformers rebuilds a qwen2
# directory's tokenizer with it whatever tokenizer.json says, so the tiny tokenizer uses it too
# and AutoTokenizer agrees with tokenizer.json (what ONNX Runtime GenAI reads) for every family
SPLIT_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


@functools.lru_cache(maxsize=None)
def _tokenizer_json(vocab_size: int = 512) -> str:
    """Train once per process (about a second); each directory gets a copy of the JSON."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_tokenizer_json()), bos_token=SPECIAL,
                                   eos_token=SPECIAL, unk_token=SPECIAL, pad_token=SPECIAL)


def tiny_lm_dir(root: Path, family: str = "llama", **overrides: Any) -> Path:
    """`root/<family>`: config.json, model.safetensors, generation config and tokenizer of a tiny
    seeded random model; `overrides` go into the config (e.g. num_hidden_layers=3)."""
    import torch
    import transformers

    config_cls, model_cls = (getattr(transformers, n) for n in FAMILY_CLASSES[family])
    tok = tiny_tokenizer()
    special = tok.convert_tokens_to_ids(SPECIAL)
    sizes = dict(TINY) if family != "gpt2" else {}
    kwargs = {**sizes, **FAMILY_EXTRA.get(family, {}), "vocab_size": len(tok), "bos_token_id": special,
              "eos_token_id": special, "pad_token_id": special, "tie_word_embeddings": False, **overrides}
    config = config_cls(**kwargs)
    torch.manual_seed(0)
    model = model_cls(config).eval()
    out = Path(root) / family
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
