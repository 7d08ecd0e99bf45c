"""Stage `prune.structured`: remove whole conv channels, attention heads and FFN neurons so the
model physically shrinks, through Torch-Pruning's dependency graph (residual adds,
concatenations, grouped/depthwise convolutions and the q/k/v/o projections of a head are cut
together).

What is cut, on any model Torch-Pruning can trace:
- every group of coupled Conv/Linear channels (a conv's filters with its BatchNorm and the next
  layer's inputs; residual partners together), except
- groups that reach the model's output (the classifier's classes, an embedding's width), and
- a transformer's residual width (groups that include a LayerNorm): heads and FFN neurons are
  cut, the hidden size stays, so position embeddings, norms and the output keep their shapes.
- Attention modules are found by duck typing: edgekit's ViT (`qkv` + `heads`) and Hugging Face
  BERT-family / ViT / DeiT (`num_attention_heads` with `query/key/value` or `q_proj/k_proj/v_proj`).
  Whole heads are removed (`prune_num_heads`, head width kept), and afterwards the attributes
  their forward reads are patched: `heads` (edgekit), `num_attention_heads` and `all_head_size`
  (Hugging Face).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from edgekit.core.backends import require
from edgekit.errors import StageError
from edgekit.prune import common
from edgekit.prune.history import new_history
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState


class StructuredConfig(StageConfig):
    kind: Literal["prune.structured"]
    ratio: float = Field(..., gt=0.0, lt=1.0, description="share of channels / FFN neurons removed")
    head_ratio: Optional[float] = Field(None, ge=0.0, lt=1.0,
                                        description="share of attention heads removed (default: ratio)")
    scope: Literal["uniform", "global"] = Field(
        "uniform", description="uniform: every group loses `ratio`; global: `ratio` of all channels, "
        "the least important anywhere first (no layer past max_layer_ratio)")
    importance: Literal["l1", "l2", "taylor", "hessian"] = "l2"
    round_to: Optional[int] = Field(None, ge=2, le=256, description="kept widths are multiples of this")
    ignore: list[str] = Field([], description="Conv/Linear layers never cut: exact names or 're:' regexes")
    max_layer_ratio: float = Field(0.9, gt=0.0, lt=1.0)
    samples: int = Field(64, ge=1, description="calibration samples for taylor / hessian scores")
    batch: int = Field(16, ge=1)


@dataclass
class Attention:
    name: str
    module: Any
    projections: list[Any]  # q, k, v Linears, or the one fused qkv Linear
    fused: bool  # one qkv Linear holding 3 x heads x head_dim outputs
    heads: int
    head_dim: int

    def heads_now(self) -> int:
        per = 3 if self.fused else 1
        return self.projections[0].out_features // per // self.head_dim

    def patch(self) -> int:
        """Set the head count the forward reads to what the projections now hold."""
        h = self.heads_now()
        if self.fused:
            self.module.heads = h
        else:
            self.module.num_attention_heads = h
            if hasattr(self.module, "all_head_size"):
                self.module.all_head_size = h * self.head_dim
        return h


_TRIOS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


def find_attention(model: Any) -> list[Attention]:
    import torch

    found = []
    for name, m in model.named_modules():
        qkv = getattr(m, "qkv", None)
        if isinstance(qkv, torch.nn.Linear) and isinstance(getattr(m, "heads", None), int):
            found.append(Attention(name, m, [qkv], True, m.heads, qkv.out_features // 3 // m.heads))
            continue
        heads = getattr(m, "num_attention_heads", None)
        if not isinstance(heads, int):
            continue
        for trio in _TRIOS:
            projs = [getattr(m, t, None) for t in trio]
            if all(isinstance(p, torch.nn.Linear) for p in projs):
                found.append(Attention(name, m, projs, False, heads, projs[0].out_features // heads))
                break
    return found


def _out_width(module: Any, out: bool) -> int:
    if hasattr(module, "out_channels"):
        return int(module.out_channels if out else module.in_channels)
    return int(module.out_features if out else module.in_features)


def auto_ignored(tp: Any, model: Any, args: tuple) -> tuple[list[Any], dict[str, str]]:
    """Layers whose out-channels are never a pruning root, and why: groups that feed the model
    output directly (no layer consumes them) and a transformer's residual width (has a LayerNorm)."""
    import torch

    with warnings.catch_warnings():  # "unwrapped parameters": the residual width is never cut
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=args)
    names = {m: n for n, m in model.named_modules()}
    ignored, why = [], {}
    for group in dg.get_all_groups(root_module_types=[torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                                                      torch.nn.Linear]):
        handlers = [dep.handler.__name__ for dep, _ in group]
        has_ln = any(isinstance(dep.target.module, torch.nn.LayerNorm) for dep, _ in group)
        feeds_output = not any("in_channels" in h for h in handlers)
        if not (has_ln or feeds_output):
            continue
        for dep, _ in group:
            m = dep.target.module
            if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and "out_channels" in dep.handler.__name__:
                ignored.append(m)
                why[names.get(m, "?")] = "transformer residual width" if has_ln else "feeds the model output"
    return ignored, why


def _importance(tp: Any, name: str) -> Any:
    imp = tp.importance
    if name == "l1":
        return imp.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return imp.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return imp.GroupTaylorImportance()
    return imp.GroupHessianImportance()


def _gradients(model: Any, scorer: Any, cfg: StructuredConfig, state: ModelState) -> int:
    """Accumulate the gradients the taylor/hessian scores read, over calibration samples."""
    import torch

    model.zero_grad()
    n = 0
    fisher: dict[Any, Any] = {}
    with torch.enable_grad():
        for inputs, labels in common.calibration_batches(state, cfg.kind, cfg.samples, cfg.batch):
            with torch.no_grad():
                ref = model(*inputs)
            if cfg.importance == "taylor":
                common.task_loss(model(*inputs), labels, ref).backward()
            else:  # per-sample squared gradients (empirical Fisher): the diagonal Hessian estimate
                for i in range(len(inputs[0])):
                    model.zero_grad()
                    one = tuple(t[i : i + 1] for t in inputs)
                    lab = None if labels is None else labels[i : i + 1]
                    common.task_loss(model(*one), lab, ref[i : i + 1]).backward()
                    for p in model.parameters():
                        if p.grad is not None:
                            sq = p.grad.detach().pow(2)
                            fisher[p] = fisher[p] + sq if p in fisher else sq
            n += len(inputs[0])
    if cfg.importance == "hessian":
        # the scorer divides these sums by the counts; filled here because Torch-Pruning 1.6.1's
        # own accumulate_grad keys its check by name but stores by parameter, so it keeps only
        # the last sample
        scorer._accu_grad = fisher
        scorer._counter = {p: n for p in fisher}
    return n


def prune_structured(model: Any, cfg: StructuredConfig, example: dict[str, np.ndarray],
                     state: Optional[ModelState] = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prune `model` in place; returns (history, details)."""
    tp = require("torch_pruning", extra="prune", why=cfg.kind)
    model.eval()
    args = common.torch_inputs(example)
    attns = find_attention(model)
    ignored, why = auto_ignored(tp, model, args)
    user = common.select(model, cfg.ignore, "ignore")
    names = dict(model.named_modules())
    ignored += [names[n] for n in sorted(user)]
    head_ratio = cfg.ratio if cfg.head_ratio is None else cfg.head_ratio
    num_heads = {p: a.heads for a in attns for p in a.projections}
    scorer = _importance(tp, cfg.importance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model, args, importance=scorer, pruning_ratio=cfg.ratio, global_pruning=cfg.scope == "global",
            max_pruning_ratio=cfg.max_layer_ratio, ignored_layers=ignored, round_to=cfg.round_to,
            num_heads=num_heads, prune_num_heads=bool(attns) and head_ratio > 0, prune_head_dims=False,
            head_pruning_ratio=head_ratio,
        )
    scored_on = 0
    if cfg.importance in ("taylor", "hessian"):
        if state is None:
            raise StageError(f"{cfg.kind}: importance {cfg.importance} needs calibration data")
        scored_on = _gradients(model, scorer, cfg, state)
    history = new_history(example)
    module_names = {m: n for n, m in model.named_modules()}
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        root = dep.target.module
        out = "out_channels" in dep.handler.__name__
        width = _out_width(root, out)
        pruned = sorted(int(i) for i in idxs)
        group.prune()
        history["ops"].append({
            "op": "channels", "layer": module_names[root], "dim": "out" if out else "in",
            "width_before": width, "pruned": pruned,
            "kept": [i for i in range(width) if i not in set(pruned)],
        })
    model.zero_grad(set_to_none=True)
    heads = {a.name: {"before": a.heads, "after": a.patch()} for a in attns}
    for a in attns:
        if heads[a.name]["after"] == 0:
            raise StageError(f"{cfg.kind}: every head of {a.name} was removed; lower head_ratio or max_layer_ratio")
    return history, {"heads": heads, "auto_ignored": why, "user_ignored": sorted(user),
                     "gradient_samples": scored_on}


def replay_channels(model: Any, ops: list[dict[str, Any]], example: dict[str, np.ndarray]) -> None:
    """Redo recorded `channels` ops on a fresh model (same dependency graph, same indices)."""
    tp = require("torch_pruning", extra="prune", why="replaying a structured pruning history")
    attns = find_attention(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=common.torch_inputs(example))
    names = dict(model.named_modules())
    for op in ops:
        module = names.get(op["layer"])
        if module is None:
            raise StageError(f"replay: layer {op['layer']!r} is not in this model")
        if _out_width(module, op["dim"] == "out") != op["width_before"]:
            raise StageError(f"replay: {op['layer']} has width {_out_width(module, op['dim'] == 'out')} "
                             f"({op['dim']}), the history expects {op['width_before']}")
        pruner = dg.get_pruner_of_module(module)
        fn = pruner.prune_out_channels if op["dim"] == "out" else pruner.prune_in_channels
        dg.get_pruning_group(module, fn, list(op["pruned"])).prune(record_history=False)
    for a in attns:
        a.patch()


class PruneStructured(Stage):
    kind = "prune.structured"
    Config = StructuredConfig

    def apply(self, state: ModelState, cfg: StructuredConfig) -> tuple[ModelState, StageRecord]:
        model = common.working_copy(state, self.kind)
        before = common.snapshot(model, state.example)
        history, details = prune_structured(model, cfg, state.example, state)
        if not history["ops"]:
            raise StageError(f"{self.kind}: nothing was pruned (every layer ignored, or ratio {cfg.ratio} "
                             "rounds to zero channels)")
        state.torch_model = model.eval()
        measured = {**common.summary(None, model, state.example, before), **details, "history": history}
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
