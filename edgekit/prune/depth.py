"""Stage `prune.depth`: drop attention or MLP sublayers, or whole blocks, of a transformer,
those that change their input least on calibration data (mean cosine similarity of the
sublayer's input and output hidden states over every token, as in "What Matters in
Transformers" and FinerCut). All candidates are scored once on the unpruned model; every score
is recorded, with the drops, as a replayable history.

Block layouts recognised (duck typing) and what dropping changes, nothing else:
- edgekit ViT blocks (`norm1, attn, norm2, mlp`, pre-norm): the block is replaced by a
  `PreNormBlock` holding the same modules under the same names, minus the dropped sublayer
  (`x + attn(norm1(x))` or `x + mlp(norm2(x))` is skipped); dropping both leaves the identity.
- Hugging Face ViT / DeiT layers (`layernorm_before, attention, layernorm_after, mlp`, pre-norm):
  the same with an `HFPreNormLayer`.
- Hugging Face BERT-family layers (`attention, intermediate, output`, post-norm): dropping the
  attention replaces `attention` by a pass-through (the layer becomes LN(x + FFN(x))); dropping
  the MLP replaces `intermediate` by the identity and `output` by a pass-through of its residual
  input; dropping the block replaces the layer by a pass-through.
- Causal LMs (a `*ForCausalLM` source): whole decoder blocks (edgekit.prune.lm_depth) or their
  attention / MLP sublayers (edgekit.prune.lm_sublayers), written as a new model directory."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from edgekit.errors import DataError, RecipeError, StageError
from edgekit.prune import common
from edgekit.prune.history import new_history
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState

PARTS = ("attention", "mlp", "block")


class DepthConfig(StageConfig):
    kind: Literal["prune.depth"]
    drop: int = Field(..., ge=1, description="how many units (sublayers or blocks) to remove")
    unit: Literal["sublayer", "block"] = "sublayer"
    parts: list[Literal["attention", "mlp"]] = Field(["attention", "mlp"],
                                                     description="sublayer kinds that may be dropped")
    ignore: list[str] = Field([], description="blocks never touched: names or 're:' regexes")
    samples: int = Field(32, ge=1, description="calibration samples that score the candidates (a causal LM: "
                                               "windows of data.calibration)")
    batch: int = Field(8, ge=1)
    score: Literal["cosine", "angular", "greedy"] = Field(
        "cosine", description="causal LMs: cosine (how little a block or sublayer turns the residual stream), "
                              "angular (blocks only: the run of `drop` consecutive blocks whose ends differ least) "
                              "or greedy (FinerCut: least KL from the unpruned model, re-scored after each "
                              "removal); the cosine values are recorded whichever decides")


def family(block: Any) -> Optional[str]:
    names = set(dict(block.named_children()))
    fam = getattr(block, "depth_family", None)
    if fam is not None:
        return fam
    if {"norm1", "attn", "norm2", "mlp"} <= names:
        return "edgekit"
    if {"layernorm_before", "attention", "layernorm_after", "mlp"} <= names:
        return "hf_prenorm"
    if {"attention", "intermediate", "output"} <= names:
        return "hf_postnorm"
    return None


def find_blocks(model: Any) -> dict[str, Any]:
    """name -> transformer block, in forward order."""
    return {n: m for n, m in model.named_modules() if n and family(m) is not None}


def _parent(model: Any, name: str) -> tuple[Any, str]:
    *path, last = name.split(".")
    parent = model
    for p in path:
        parent = getattr(parent, p)
    return parent, last


def drop(model: Any, name: str, part: str) -> None:
    """Remove `part` (attention | mlp | block) of the block called `name`, in place."""
    if part not in PARTS:
        raise StageError(f"prune.depth: part {part!r} is not one of {', '.join(PARTS)}")
    import torch

    from edgekit.prune.depth_modules import HFPreNormLayer, PassAttention, PassLayer, PassOutput, PreNormBlock

    parent, attr = _parent(model, name)
    block = getattr(parent, attr, None)
    fam = None if block is None else family(block)
    if fam is None:
        raise StageError(f"prune.depth: {name!r} is not a transformer block of a known layout")
    if part == "block":
        setattr(parent, attr, PassLayer())
    elif fam == "edgekit":
        new = block if isinstance(block, PreNormBlock) else PreNormBlock(block)
        setattr(new, "attn" if part == "attention" else "mlp", None)
        setattr(parent, attr, new)
    elif fam == "hf_prenorm":
        new = block if isinstance(block, HFPreNormLayer) else HFPreNormLayer(block)
        setattr(new, "attention" if part == "attention" else "mlp", None)
        setattr(parent, attr, new)
    elif part == "attention":
        block.attention = PassAttention()
    else:
        block.intermediate = torch.nn.Identity()
        block.output = PassOutput()


def _first_tensor(v: Any) -> Any:
    return v[0] if isinstance(v, (tuple, list)) else v


def score(model: Any, blocks: dict[str, Any], state: ModelState, cfg: DepthConfig) -> list[dict[str, Any]]:
    """Mean cosine similarity between each candidate's input and output hidden states."""
    import torch
    import torch.nn.functional as F

    inputs: dict[tuple[str, str], Any] = {}
    sums: dict[tuple[str, str], list[float]] = {}
    handles = []

    def grab_in(key: tuple[str, str]) -> Any:
        def hook(mod: Any, args: Any, kwargs: Any) -> None:
            inputs[key] = args[0] if args else next(iter(kwargs.values()))
        return hook

    def grab_out(key: tuple[str, str], residual: bool) -> Any:
        def hook(mod: Any, args: Any, output: Any) -> None:
            x = inputs.pop(key)
            y = _first_tensor(output)
            y = x + y if residual else y
            cos = F.cosine_similarity(x.flatten(0, -2).double(), y.flatten(0, -2).double(), dim=-1)
            s = sums.setdefault(key, [0.0, 0])
            s[0] += float(cos.sum())
            s[1] += int(cos.numel())
        return hook

    def watch(key: tuple[str, str], first: Any, last: Any, residual: bool) -> None:
        handles.append(first.register_forward_pre_hook(grab_in(key), with_kwargs=True))
        handles.append(last.register_forward_hook(grab_out(key, residual)))

    for name, b in blocks.items():
        fam = family(b)
        if cfg.unit == "block":
            watch((name, "block"), b, b, False)
        elif fam == "edgekit":
            watch((name, "attention"), b.norm1, b.attn, True)
            watch((name, "mlp"), b.norm2, b.mlp, True)
        elif fam == "hf_prenorm":
            watch((name, "attention"), b.layernorm_before, b.attention, True)
            watch((name, "mlp"), b.layernorm_after, b.mlp, True)
        else:
            watch((name, "attention"), b.attention, b.attention, False)
            watch((name, "mlp"), b.intermediate, b.output, False)
    try:
        with torch.no_grad():
            for batch, _ in common.calibration_batches(state, cfg.kind, cfg.samples, cfg.batch):
                model(*batch)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for (name, part), (total, n) in sums.items():
        if cfg.unit == "sublayer" and part not in cfg.parts:
            continue
        rows.append({"layer": name, "part": part, "cosine": round(total / max(n, 1), 6)})
    return rows


class PruneDepth(Stage):
    kind = "prune.depth"
    Config = DepthConfig

    def apply(self, state: ModelState, cfg: DepthConfig) -> tuple[ModelState, StageRecord]:
        if state.causal_lm is not None:
            return _apply_lm(state, cfg)
        if cfg.score != "cosine":
            raise RecipeError(f"score: {cfg.score} removes whole decoder blocks of a causal LM; encoders and ViTs "
                              "are scored by cosine (remove the field)")
        model = common.working_copy(state, self.kind)
        blocks = find_blocks(model)
        if not blocks:
            raise StageError(f"{self.kind}: no transformer block of a known layout in this model "
                             "(edgekit ViT, Hugging Face BERT-family, ViT/DeiT)")
        skip = {n for n in blocks for p in cfg.ignore if common.matches(p, n)}
        unmatched = [p for p in cfg.ignore if not any(common.matches(p, n) for n in blocks)]
        if unmatched:
            raise RecipeError(f"ignore: {unmatched[0]!r} matches no block; blocks are named like "
                              f"{', '.join(list(blocks)[:3])}")
        candidates = {n: b for n, b in blocks.items() if n not in skip}
        units = len(candidates) * (1 if cfg.unit == "block" else len(cfg.parts))
        everything = not skip and (cfg.unit == "block" or len(cfg.parts) == 2)
        if cfg.drop > units or (everything and cfg.drop == units):
            units -= 1 if everything else 0
            raise RecipeError(f"drop: {cfg.drop} {cfg.unit}s asked for; at most {units} can go "
                              f"({len(candidates)} blocks{', not all of them' if everything else ''})")
        before = common.snapshot(model, state.example)
        rows = score(model, candidates, state, cfg)
        ranked = sorted(rows, key=lambda r: -r["cosine"])
        history = new_history(state.example)
        for r in ranked[: cfg.drop]:
            drop(model, r["layer"], r["part"])
            history["ops"].append({"op": "drop", "layer": r["layer"], "part": r["part"]})
        for r in rows:
            r["dropped"] = any(op["layer"] == r["layer"] and op["part"] == r["part"] for op in history["ops"])
        state.torch_model = model.eval()
        measured = {**common.summary(None, model, state.example, before), "candidates": rows,
                    "dropped": [f"{op['layer']}:{op['part']}" for op in history["ops"]], "history": history}
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)


def _apply_lm(state: ModelState, cfg: DepthConfig) -> tuple[ModelState, StageRecord]:
    """A causal LM's blocks: scored on calibration windows, the chosen ones removed, the model
    written as a new directory the targets (and any stage after) build from. The unpruned model
    stays the verification reference and the teacher a healing stage distils from."""
    import dataclasses
    import time

    from edgekit.prune import lm_depth

    lm = state.causal_lm
    calib = state.calibration
    if calib is None or not len(calib):
        raise DataError("prune.depth: scoring a causal LM's blocks needs calibration text: set data.calibration, "
                        "e.g. {builtin: pydoc_topics, split: train, samples: 8, seq_len: 256}")
    windows = [s["input_ids"] for s in calib.samples[: cfg.samples]]
    model = dataclasses.replace(lm).torch_model()
    n = len(lm_depth.decoder_blocks(model))
    names = [f"model.layers.{i}" for i in range(n)]
    unmatched = [p for p in cfg.ignore if not any(common.matches(p, x) for x in names)]
    if unmatched:
        raise RecipeError(f"ignore: {unmatched[0]!r} matches no block; blocks are named like {', '.join(names[:3])}")
    allowed = {i for i, x in enumerate(names) if not any(common.matches(p, x) for p in cfg.ignore)}
    if cfg.unit == "sublayer":
        return _apply_lm_sublayers(state, cfg, model, windows, allowed)
    if cfg.drop >= n or cfg.drop > len(allowed):
        raise RecipeError(f"drop: {cfg.drop} blocks asked for; this {lm.architecture} has {n}, of which at most "
                          f"{min(n - 1, len(allowed))} can go")
    t0 = time.perf_counter()
    tick = state.progress(f"prune.depth: hidden states of {n} blocks on {len(windows)} calibration windows", 1)
    states = lm_depth.hidden_states(model, windows)
    tick(1)
    removed, scores = lm_depth.choose(states, "angular" if cfg.score == "angular" else "cosine", cfg.drop, allowed)
    del states
    steps: list[dict] = []
    if cfg.score == "greedy":
        runs = sum(len(allowed) - k for k in range(cfg.drop))
        tick = state.progress(f"prune.depth greedy: each remaining block removed in turn, {cfg.drop} times "
                              f"({runs} forwards of {len(windows)} windows)", runs)
        removed, steps = lm_depth.greedy(model, windows, cfg.drop, allowed, tick)
    changed = _write_lm(state, model, f"depth-{cfg.score}-{cfg.drop}",
                        f"the {n - cfg.drop}-block model", removed, None)
    measured = {"unit": "block", "score": cfg.score, "blocks": n, "removed": sorted(removed),
                "removal_order": removed, "calibration_windows": len(windows), **scores,
                "greedy_steps": steps, "config": changed, "seconds": round(time.perf_counter() - t0, 2)}
    return state, StageRecord(kind=PruneDepth.kind, settings=cfg.model_dump(), measured=measured)


def _apply_lm_sublayers(state: ModelState, cfg: DepthConfig, model: Any, windows: list[Any],
                        allowed: set[int]) -> tuple[ModelState, StageRecord]:
    """Attention and/or MLP sublayers of a causal LM's decoder layers: scored, the chosen ones
    written as edgekit.sources.lm_sublayers describes (a layer that loses both goes as a block)."""
    import time

    from edgekit.prune import lm_depth, lm_sublayers
    from edgekit.sources.lm_sublayers import removed as removed_before

    lm = state.causal_lm
    if cfg.score == "angular":
        raise RecipeError("score: angular ranks runs of whole blocks; sublayers are scored by cosine or greedy "
                          "(or set unit: block)")
    n = len(lm_depth.decoder_blocks(model))
    earlier = [(i, p) for p, idx in removed_before(model.config).items() for i in idx]
    candidates = [(i, p) for i in sorted(allowed) for p in cfg.parts if (i, p) not in earlier]
    attention_left = n - sum(1 for _, p in earlier if p == "attention")
    at_most = len(candidates) - (1 if sum(1 for _, p in candidates if p == "attention") >= attention_left else 0)
    if cfg.drop > at_most:
        raise RecipeError(f"drop: {cfg.drop} sublayers asked for; this {lm.architecture} has {n} decoder layers, of "
                          f"which at most {at_most} {'/'.join(cfg.parts)} sublayers can go (one attention stays: "
                          "it holds the KV cache)")
    t0 = time.perf_counter()
    tick = state.progress(f"prune.depth: residual stream around {len(candidates)} sublayers on {len(windows)} "
                          "calibration windows", 1)
    scores = lm_sublayers.influence(model, windows, cfg.parts)
    tick(1)
    scores = {u: v for u, v in scores.items() if u in candidates}
    chosen = lm_sublayers.by_influence(scores, cfg.drop, n, earlier)
    steps: list[dict] = []
    if cfg.score == "greedy":
        runs = sum(len(candidates) - k for k in range(cfg.drop))
        tick = state.progress(f"prune.depth greedy: each remaining sublayer removed in turn, {cfg.drop} times "
                              f"(up to {runs} forwards of {len(windows)} windows)", runs)
        chosen, steps = lm_sublayers.greedy(model, windows, cfg.drop, candidates, tick, earlier)
    parts = {p: sorted(i for i, q in chosen if q == p) for p in cfg.parts}
    changed = _write_lm(state, model, f"depth-sublayer-{cfg.score}-{cfg.drop}",
                        f"the model without {cfg.drop} sublayers", [], {p: idx for p, idx in parts.items() if idx})
    measured = {"unit": "sublayer", "score": cfg.score, "blocks": n, "removed": [lm_sublayers.label(u) for u in chosen],
                "removal_order": [lm_sublayers.label(u) for u in chosen], "calibration_windows": len(windows),
                "influence": {lm_sublayers.label(u): round(v, 6) for u, v in sorted(scores.items())},
                "greedy_steps": steps, "config": changed, "seconds": round(time.perf_counter() - t0, 2)}
    return state, StageRecord(kind=PruneDepth.kind, settings=cfg.model_dump(), measured=measured)


def _write_lm(state: ModelState, model: Any, name: str, what: str, blocks: list[int],
              sublayers: Optional[dict[str, list[int]]]) -> dict[str, Any]:
    """The pruned model written as a directory under the run's scratch, reloaded and checked;
    it becomes the source every later stage builds from, and the unpruned one the teacher."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from edgekit.prune import lm_depth

    lm = state.causal_lm
    out = Path(state.scratch or tempfile.mkdtemp(prefix="edgekit-depth-")) / name
    tick = state.progress(f"prune.depth: writing {what} and reloading it", 1)
    changed = lm_depth.write_pruned(lm, blocks, out, model, sublayers)
    tick(1)
    if state.lm_teacher is None:
        state.lm_teacher = lm
    state.causal_lm = dataclasses.replace(lm, directory=out)
    return changed
