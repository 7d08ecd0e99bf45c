"""Depth pruning of a causal LM: which decoder blocks to remove, by three scores measured on
calibration text, and the smaller model written as a plain Hugging Face directory that both
generation targets export with its KV cache.

Scores (every candidate's value goes into the record, whichever decides):
- `cosine`: block influence (ShortGPT): 1 - cosine of a block's input and output hidden states,
  mean over tokens; the `drop` least influential blocks go.
- `angular`: the angular distance arccos(cos)/pi between the hidden states entering block l and
  those entering block l + drop, mean over tokens (Gromov et al.); the run of `drop` consecutive
  blocks with the least distance goes.
- `greedy`: FinerCut's procedure at block granularity: remove, one at a time, the block whose
  removal changes the model's next-token distribution least (KL per token from the unpruned
  model), re-scoring after every removal.

Attention-only or MLP-only removal (`unit: sublayer`) is edgekit.prune.lm_sublayers's; this
module writes both kinds (edgekit.sources.lm_sublayers says how a directory carries a removed
sublayer).

Why a new directory instead of a patched module tree: the exporters read `config.json`
(`num_hidden_layers`, per-layer lists such as `layer_types`) and number the KV cache's layers
from it; writing the kept blocks under new indices and reloading gives a model no different in
kind from one trained at that depth, and the reload is compared with the pruned model in memory."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgekit.errors import StageError
from edgekit.sources.causal_lm import save_lm_directory


def decoder_blocks(model: Any) -> Any:
    """The ModuleList of decoder blocks of a *ForCausalLM (model.model.layers)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not len(layers):
        raise StageError(f"prune.depth: {type(model).__name__} has no decoder blocks at model.layers; "
                         "the causal LMs it knows keep them there (Llama, Qwen, Mistral, Phi-3, Gemma)")
    return layers


def _hidden(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def hidden_states(model: Any, windows: Sequence[np.ndarray]) -> list[list[Any]]:
    """Per window, the hidden states entering each block and leaving the last one (n + 1
    tensors of [tokens, hidden]), before the final norm."""
    import torch

    blocks = decoder_blocks(model)
    out: list[list[Any]] = []
    seen: list[Any] = []

    def pre(_m: Any, args: Any, kwargs: Any) -> None:
        seen.append((args[0] if args else kwargs["hidden_states"])[0].detach().to(torch.float64))

    def post(_m: Any, _a: Any, output: Any) -> None:
        seen.append(_hidden(output)[0].detach().to(torch.float64))

    handles = [b.register_forward_pre_hook(pre, with_kwargs=True) for b in blocks]
    handles.append(blocks[-1].register_forward_hook(post))
    try:
        with torch.no_grad():
            for w in windows:
                seen.clear()
                model(torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)), use_cache=False)
                if len(seen) != len(blocks) + 1:
                    raise StageError(f"prune.depth: {type(model).__name__}'s blocks did not each run once per "
                                     "forward; its layout is not one prune.depth knows")
                out.append(list(seen))
    finally:
        for h in handles:
            h.remove()
    return out


def _cos(a: Any, b: Any) -> float:
    import torch.nn.functional as F

    return float(F.cosine_similarity(a, b, dim=-1).clamp(-1, 1).mean())


def influence(states: list[list[Any]]) -> list[float]:
    """Block influence: 1 - mean cosine of each block's input and output."""
    n = len(states[0]) - 1
    return [float(np.mean([1 - _cos(s[i], s[i + 1]) for s in states])) for i in range(n)]


def angular(states: list[list[Any]], run: int) -> list[float]:
    """Angular distance from the states entering block l to those entering block l + run, for
    every l that leaves room for the run."""
    import torch
    import torch.nn.functional as F

    n = len(states[0]) - 1
    out = []
    for start in range(n - run + 1):
        vals = []
        for s in states:
            cos = F.cosine_similarity(s[start], s[start + run], dim=-1).clamp(-1, 1)
            vals.append(float((torch.arccos(cos) / math.pi).mean()))
        out.append(float(np.mean(vals)))
    return out


def greedy(model: Any, windows: Sequence[np.ndarray], drop: int, allowed: set[int],
           tick: Callable[[int], None]) -> tuple[list[int], list[dict[str, Any]]]:
    """Remove `drop` blocks one at a time, each time the one whose removal gives the least KL
    per token from the unpruned model's next-token distribution. Returns the removed indices
    (original numbering, in removal order) and every step's score of every candidate.

    Each step caches the inputs of the remaining blocks once, so that a candidate's removal
    reruns only the blocks after it (quantize.lm_mixed's Scanner, with its whole-forward
    fallback for a model whose head is more than norm and lm_head)."""
    import torch

    from edgekit.quantize.lm_mixed import Scanner, kl_from

    decoder_blocks(model)
    inner = model.model
    original = list(inner.layers)
    ids = [torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)) for w in windows]
    with torch.no_grad():
        ref = [torch.log_softmax(model(x, use_cache=False).logits[0].to(torch.float32), -1) for x in ids]
    removed: list[int] = []
    steps: list[dict[str, Any]] = []
    try:
        for _ in range(drop):
            kept = [i for i in range(len(original)) if i not in removed]
            inner.layers = torch.nn.ModuleList([original[i] for i in kept])
            scanner = Scanner(model, list(windows))
            scores: dict[int, float] = {}
            for c in sorted(allowed - set(removed)):
                j = kept.index(c)
                with torch.no_grad():
                    if scanner.fast:
                        got = [scanner._tail(j, w, skip=True) for w in range(len(ids))]
                    else:
                        inner.layers = torch.nn.ModuleList([original[i] for i in kept if i != c])
                        got = [model(x, use_cache=False).logits[0] for x in ids]
                        inner.layers = torch.nn.ModuleList([original[i] for i in kept])
                scores[c] = float(np.mean([kl_from(r, g) for r, g in zip(ref, got)]))
                tick(1)
            best = min(scores, key=lambda c: scores[c])
            removed.append(best)
            steps.append({"removed": best, "kl": {str(c): round(v, 6) for c, v in scores.items()}})
    finally:
        inner.layers = torch.nn.ModuleList(original)
    return removed, steps


def per_layer_fields(config: Any, n: int) -> list[str]:
    """Config fields that hold one entry per decoder layer (layer_types and the like): the
    ones to cut with the layers."""
    return [k for k, v in config.to_dict().items()
            if isinstance(v, list) and len(v) == n and k not in ("architectures",)]


def write_pruned(lm: Any, removed: Sequence[int], out: Path, model: Any = None,
                 sublayers: Optional[dict[str, list[int]]] = None) -> dict[str, Any]:
    """The source directory without the removed blocks, renumbered, with the config's layer
    count and per-layer lists cut to match, and the `sublayers` ({"attention": [layer, ...],
    "mlp": [...]}, source numbering) removed as edgekit.sources.lm_sublayers writes them; reloaded
    and compared with the pruned model in memory. `model`: the source's torch model already
    loaded (it is changed), else a fresh copy is loaded. Returns what changed in the config."""
    import torch

    from edgekit.sources import lm_sublayers

    model = dataclasses.replace(lm).torch_model() if model is None else model
    blocks = decoder_blocks(model)
    n = len(blocks)
    gone = lm_sublayers.removed(model.config)  # an earlier prune.depth's, already silenced
    for part, idx in (sublayers or {}).items():
        for i in idx:
            _zero_output(model, blocks[i], part, i)
        gone[part] = sorted(set(gone.get(part, [])) | set(idx))
    # a layer left with neither sublayer is the identity: it goes as a block
    both = set(gone.get("attention", [])) & set(gone.get("mlp", []))
    drop_blocks = set(removed) | both
    keep = [i for i in range(n) if i not in drop_blocks]
    fields = per_layer_fields(model.config, n)
    model.model.layers = torch.nn.ModuleList([blocks[i] for i in keep])
    for j, b in enumerate(model.model.layers):
        for mod in b.modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = j
    model.config.num_hidden_layers = len(keep)
    for k in fields:
        setattr(model.config, k, [getattr(model.config, k)[i] for i in keep])
    marker = {p: [keep.index(i) for i in idx if i in keep] for p, idx in gone.items()}
    marker = {p: idx for p, idx in marker.items() if idx}
    if marker:
        setattr(model.config, lm_sublayers.MARKER, marker)
        lm_sublayers.silence(model)
    elif hasattr(model.config, lm_sublayers.MARKER):
        delattr(model.config, lm_sublayers.MARKER)
    save_lm_directory(model, lm.directory, out)
    probe = torch.as_tensor(np.arange(16, dtype=np.int64).reshape(1, -1) % max(2, model.config.vocab_size - 1) + 1)
    with torch.no_grad():
        expected = model(probe, use_cache=False).logits
        got = dataclasses.replace(lm, directory=out).torch_model()(probe, use_cache=False).logits
    if not torch.allclose(expected, got, atol=1e-4, rtol=1e-4):
        raise StageError(f"prune.depth: the pruned {lm.architecture} saved to a directory does not reload as it ran "
                         f"(max |diff| {float((expected - got).abs().max()):.3g}); a config field that depends on "
                         "the layer count is not one this version cuts")
    return {"num_hidden_layers": [n, len(keep)], "per_layer_fields": fields, "kept": keep,
            **({lm_sublayers.MARKER: marker} if marker else {})}


def _zero_output(model: Any, layer: Any, part: str, i: int) -> None:
    """The sublayer's output projection (and bias) to zero: it then adds nothing to the residual."""
    import torch

    from edgekit.sources.lm_sublayers import PARTS

    module, proj = PARTS[part]
    linear = getattr(getattr(layer, module, None), proj, None)
    if not isinstance(linear, torch.nn.Linear):
        raise StageError(f"prune.depth: {type(model).__name__}'s layer {i} has no {module}.{proj} linear layer; "
                         "removing its sublayers needs the Llama layout (self_attn.o_proj, mlp.down_proj)")
    with torch.no_grad():
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def choose(states: list[list[Any]], score: str, drop: int, allowed: set[int]) -> tuple[list[int], dict[str, Any]]:
    """The blocks `cosine` or `angular` removes, and every candidate's value of both."""
    inf = influence(states)
    ang = angular(states, drop)
    if score == "cosine":
        removed = sorted(sorted(allowed, key=lambda i: inf[i])[:drop])
    else:
        runs = [s for s in range(len(ang)) if all(i in allowed for i in range(s, s + drop))]
        if not runs:
            raise StageError(f"prune.depth: no run of {drop} consecutive blocks is free of `ignore`; "
                             "score: cosine or greedy can pick blocks apart")
        start = min(runs, key=lambda s: ang[s])
        removed = list(range(start, start + drop))
    return removed, {"influence": [round(v, 6) for v in inf],
                     "angular": {str(s): round(v, 6) for s, v in enumerate(ang)}}
