"""A causal LM's Hugging Face directory to the stateful OpenVINO model that
`openvino_genai.LLMPipeline` runs: inputs `input_ids`, `attention_mask`, `position_ids` and
`beam_idx`, output `logits`, and the KV cache held as model state (ReadValue / Assign pairs) so
that an application feeds only the new tokens.

Written here rather than taken from optimum-intel, whose exporter makes the same model: its only
release that installs beside torch 2.13 without torchvision (2.1) pins transformers < 5.6, and
transformers 5.6+ is what reads the config files every current model directory carries
(`rope_parameters`, `TokenizersBackend`). Pinning the whole project to 5.5 would trade every
encoder path's transformers for one exporter; OpenVINO's own `convert_model` plus its
make-stateful transformation needs nothing but what the project already installs, and the
pieces it takes are small: a wrapper that gives the KV cache explicit inputs and outputs, the
transformation, and a zero initial state sized by the batch. Measured on a tiny model of every
family edgekit accepts and on SmolLM2-135M: teacher-forced logits and token-by-token decoding
both within 1e-6 of transformers fp32 (tests/test_export_ov_genai.py)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from edgekit.export import ov_save
from edgekit.sources.lm_sublayers import attention_layers

INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")
EXAMPLE_PAST, EXAMPLE_NEW = 3, 4  # tokens in the example's cache and in its new chunk


def cache_shape(config: Any) -> tuple[int, int, int]:
    """(layers with a KV cache, KV heads, head size) of the model's KV cache."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return len(attention_layers(config, int(config.num_hidden_layers))), kv_heads, head_dim


def _wrapper(model: Any) -> Any:
    """The model with its KV cache as plain tensors: past keys and values in, present out.

    Every layer gets a full-length cache (transformers' DynamicLayer), also the sliding-window
    ones: the sliding window is then applied by the attention mask transformers builds from the
    cache length, which traces with dynamic shapes, where a sliding layer's own cropping keeps a
    Python-side length that tracing would freeze. The beam reorder (`beam_idx`) is a gather on
    the batch axis of each past tensor, which is where LLMPipeline expects it."""
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer

    total = int(model.config.num_hidden_layers)
    cached = attention_layers(model.config, total)  # those prune.depth left an attention (and a cache)

    class WithExplicitCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, beam_idx: Any, *past: Any) -> Any:
            cache = DynamicCache()
            for i in range(total):
                layer = DynamicLayer()
                if i in cached:
                    k = cached.index(i)
                    keys, values = past[2 * k].index_select(0, beam_idx), past[2 * k + 1].index_select(0, beam_idx)
                else:  # a removed attention: one head of size 1, for the cache's length
                    keys = values = past[0][:, :1, :, :1]
                # set, not `update`: update concatenates onto an empty 1-D tensor, which fails to trace
                layer.lazy_initialization(keys, values)
                layer.keys, layer.values = keys, values
                cache.layers.append(layer)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True)
            present = out.past_key_values
            flat = [out.logits]
            for i in cached:
                flat += [present.layers[i].keys, present.layers[i].values]
            return tuple(flat)

    return WithExplicitCache().eval()


def past_names(layers: int) -> tuple[list[str], list[str]]:
    """Names of the cache inputs and outputs, paired in order (the make-stateful map)."""
    ins = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    outs = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return ins, outs


def convert(model: Any) -> Any:
    """The stateful `ov.Model` of a transformers causal LM (fp32, eval mode). The model is
    deep-copied first: tracing may patch modules, and the caller's copy stays the reference."""
    import openvino as ov
    import torch

    layers, kv_heads, head_dim = cache_shape(model.config)
    model = copy.deepcopy(model).eval()
    model.config.use_cache = True
    b, p, n = 1, EXAMPLE_PAST, EXAMPLE_NEW
    example = (torch.ones(b, n, dtype=torch.long), torch.ones(b, p + n, dtype=torch.long),
               torch.arange(p, p + n).unsqueeze(0), torch.zeros(b, dtype=torch.int32),
               *[torch.zeros(b, kv_heads, p, head_dim) for _ in range(2 * layers)])
    # tracing warns at every Python-side shape test in transformers' code (each checked by the
    # tests at other lengths than the example's) and transformers at its deprecated cache name
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ovm = ov.convert_model(_wrapper(model), example_input=example)
    finally:
        hf_logging.set_verbosity(level)
    ins, outs = past_names(layers)
    for port, name in zip(ovm.inputs, [*INPUTS, *ins]):
        port.get_tensor().set_names({name})
    for port, name in zip(ovm.outputs, ["logits", *outs]):
        port.get_tensor().set_names({name})
    for param, name in zip(ovm.get_parameters(), [*INPUTS, *ins]):
        dims = [-1] if name == "beam_idx" else [-1, -1] if name in INPUTS else [-1, kv_heads, -1, head_dim]
        param.set_partial_shape(ov.PartialShape(dims))
    ovm.validate_nodes_and_infer_types()
    return make_stateful(ovm, layers)


def make_stateful(ovm: Any, layers: int) -> Any:
    """Turn the cache inputs and outputs into state, initialised to an empty cache of the
    feed's batch size. Without an initial value the CPU plugin refuses to compile the model
    ("ReadValue contains less parent edges"): the state's shape has to come from somewhere."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    ins, outs = past_names(layers)
    apply_make_stateful_transformation(ovm, dict(zip(ins, outs)))
    ids = next(p for p in ovm.get_parameters() if "input_ids" in p.output(0).get_names())
    batch = ops.gather(ops.shape_of(ids, "i64"), ops.constant([0], ov.Type.i64), ops.constant(0, ov.Type.i64))
    for op in ovm.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [batch] + [ops.constant([d.get_length() if d.is_static else 0], ov.Type.i64)
                              for d in list(op.get_output_partial_shape(0))[1:]]
            op.set_arguments([ops.broadcast(ops.constant(0.0, ov.Type.f32), ops.concat(dims, 0)).output(0)])
    ovm.validate_nodes_and_infer_types()
    return ovm


def write_tokenizers(tokenizer: Any, out: Path) -> list[Path]:
    """openvino_tokenizer.xml / openvino_detokenizer.xml, which LLMPipeline reads beside the model."""
    import openvino_tokenizers

    tok, detok = openvino_tokenizers.convert_tokenizer(tokenizer, with_detokenizer=True)
    paths = [out / "openvino_tokenizer.xml", out / "openvino_detokenizer.xml"]
    for model, path in zip((tok, detok), paths):
        ov_save.save(model, path)
    return paths
