"""Runs onnxruntime-genai's model builder (`python -m edgekit.export.genai_builder ARGS`, the
builder's own arguments) with the config fields it reads in the names it reads them.

Why a shim: transformers 5 reads Gemma-3's RoPE bases from `rope_parameters`, nested per layer
type (`full_attention` / `sliding_attention`), and drops the flat `rope_theta` /
`rope_local_base_freq` that transformers 4 wrote, even when config.json still holds them. The
builder (0.18) reads only the flat attributes: without them it took its default base of 10000
for the global layers and failed on the local ones. So the config object the builder loads gets
the two attributes back from the nested values, and `rope_parameters` becomes the global
layers' (flat, as the builder indexes it); nothing else changes, and the graph is verified
against PyTorch like every other (tests/test_lm_pipeline.py runs a tiny Gemma-3)."""

from __future__ import annotations

import runpy
from typing import Any


def flat_rope(config: Any) -> Any:
    """Gemma-3's nested RoPE bases as the flat attributes the builder reads (other configs as
    they are)."""
    rope = getattr(config, "rope_parameters", None)
    if getattr(config, "model_type", None) == "gemma3_text" and isinstance(rope, dict) and "full_attention" in rope:
        config.rope_theta = rope["full_attention"]["rope_theta"]
        config.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
        config.rope_parameters = dict(rope["full_attention"])  # the global layers' settings, flat
    return config


def main() -> None:
    import transformers

    load = transformers.AutoConfig.from_pretrained.__func__

    def from_pretrained(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return flat_rope(load(cls, *args, **kwargs))

    transformers.AutoConfig.from_pretrained = classmethod(from_pretrained)
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
