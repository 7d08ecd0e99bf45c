"""Stages `tokens.merge` and `tokens.prune`: wrap `state.torch_model` in a token-reducing
adapter with a static per-layer schedule, before export.onnx.

The schedule is fixed at build time, so every layer's token count is a constant and the model
exports with static shapes; the record lists tokens kept and FLOPs before/after per layer."""

from __future__ import annotations

import copy
from typing import Any, Literal, Optional, Union

from pydantic import Field, model_validator

from edgekit.core.strict import Strict
from edgekit.errors import DataError, RecipeError
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState


class FinetuneConfig(Strict):
    """A short distillation of the reduced model toward the unreduced one on the calibration
    inputs (no labels needed); off unless asked for."""

    epochs: int = Field(ge=1, le=100)
    lr: float = Field(1e-4, gt=0, le=1e-1)
    batch: int = Field(32, ge=1)
    seed: int = 0


class TokensConfig(StageConfig):
    r: Union[int, list[int]] = Field(..., description="tokens removed per block: an int or one value per block")
    schedule: Literal["constant", "decreasing"] = "constant"
    layers: Optional[list[int]] = Field(None, description="blocks where tokens are removed (default: all)")
    protected: Optional[int] = Field(None, ge=1, description="leading special tokens never removed "
                                     "(default: the model's class/distillation tokens)")
    finetune: Optional[FinetuneConfig] = None

    @model_validator(mode="after")
    def _check(self) -> "TokensConfig":
        values = self.r if isinstance(self.r, list) else [self.r]
        if any(v < 0 for v in values):
            raise ValueError(f"r must be >= 0 tokens per layer, got {self.r}")
        if isinstance(self.r, list) and (self.layers is not None or self.schedule != "constant"):
            raise ValueError("give r as a list on its own (one value per block), or an int with schedule/layers")
        if self.layers is not None and any(v < 0 for v in self.layers):
            raise ValueError(f"layers are block indices >= 0, got {self.layers}")
        return self


class TokenMergeConfig(TokensConfig):
    kind: Literal["tokens.merge"]
    proportional_attention: bool = True


class TokenPruneConfig(TokensConfig):
    kind: Literal["tokens.prune"]


def _wrap(model: Any, removed_for: Any, method: str, proportional: bool, protected: Optional[int],
          example: dict[str, Any]) -> Any:
    """The adapter for this model's family; `removed_for(n0, depth, protected)` gives the
    per-layer schedule once the token count and depth are known."""
    from edgekit.tokens import bert, vit

    if bert.is_bert(model):
        n0, depth = example["input_ids"].shape[1], bert.depth(model)
        p = protected or 1
        return bert.ReducedBert(model, removed_for(n0, depth, p), method, proportional, p), n0
    layout = vit.find_layout(model)
    import torch

    with torch.no_grad():
        n0 = layout.embed(torch.from_numpy(next(iter(example.values())))).shape[1]
    p = protected or layout.protected
    return vit.ReducedViT(model, removed_for(n0, len(layout.blocks), p), method, proportional, p), n0


def schedule_for(cfg: TokensConfig, n0: int, depth: int, protected: int, method: str) -> list[int]:
    """The recipe's r/schedule/layers as tokens removed per block; a schedule the model cannot
    follow is a RecipeError naming the layer and the most it allows (never capped silently)."""
    from edgekit.tokens.merge import max_r, schedule

    if cfg.layers is not None and max(cfg.layers, default=0) >= depth:
        raise RecipeError(f"layers: {cfg.layers} names a block past the last; the model has blocks 0..{depth - 1}")
    removed = schedule(cfg.r, depth, cfg.schedule == "decreasing", cfg.layers)
    if len(removed) != depth:
        raise RecipeError(f"r: {len(removed)} values given, the model has {depth} blocks; give one per block")
    n = n0
    for i, r in enumerate(removed):
        limit = max_r(n, protected) if method == "merge" else n - protected - 2
        if r > limit:
            raise RecipeError(f"r: removing {r} tokens at block {i} is impossible with {n} tokens there; "
                              f"at most {max(limit, 0)} ({method})")
        n -= r
    return removed


def finetune(reduced: Any, samples: list[dict[str, Any]], cfg: FinetuneConfig, targets: list[Any]) -> list[float]:
    """Distil: logits by KL to the teacher's softmax, other outputs by MSE; mean loss per epoch."""
    import torch

    from edgekit.checks import metrics

    torch.manual_seed(cfg.seed)
    names = list(samples[0])
    inputs = [torch.cat([torch.from_numpy(s[k]) for s in samples]) for k in names]
    teacher = torch.cat(targets)
    logits = metrics.looks_like_logits(teacher.numpy())
    opt = torch.optim.AdamW([p for p in reduced.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    reduced.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(teacher), generator=gen)
        total = 0.0
        for i in range(0, len(perm), cfg.batch):
            j = perm[i : i + cfg.batch]
            out = reduced(*[t[j] for t in inputs])
            if logits:
                loss = torch.nn.functional.kl_div(out.log_softmax(-1), teacher[j].softmax(-1), reduction="batchmean")
            else:
                loss = torch.nn.functional.mse_loss(out, teacher[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(j)
        history.append(round(total / len(teacher), 6))
    reduced.eval()
    return history


class _TokenStage(Stage):
    method: str

    def apply(self, state: ModelState, cfg: Any) -> tuple[ModelState, StageRecord]:
        import torch

        from edgekit.tokens.plan import layer_report

        if state.torch_model is None:
            raise RecipeError(f"kind: {self.kind} needs a torch model; this recipe's model is ONNX")
        model = state.torch_model
        teacher_out = None
        if cfg.finetune is not None:
            if state.calibration is None:
                raise DataError(f"{self.kind}: finetune needs data.calibration (its inputs are distilled on)")
            with torch.no_grad():
                teacher_out = [model(*[torch.from_numpy(v) for v in s.values()]) for s in state.calibration.samples]
            model = copy.deepcopy(model)  # the reference model stays untouched

        def removed_for(n0: int, depth: int, protected: int) -> list[int]:
            return schedule_for(cfg, n0, depth, protected, self.method)

        reduced, n0 = _wrap(model, removed_for, self.method, getattr(cfg, "proportional_attention", True),
                            cfg.protected, state.example)
        history = None
        if cfg.finetune is not None:
            history = finetune(reduced, state.calibration.samples, cfg.finetune, teacher_out)
        dim, hidden = reduced.widths()
        rows = layer_report(n0, reduced.removed, dim, hidden)
        before = sum(r["flops_before"] for r in rows)
        after = sum(r["flops_after"] for r in rows)
        state.torch_model = reduced.eval()
        measured: dict[str, Any] = {
            "family": reduced.family,
            "method": self.method,
            "tokens_in": n0,
            "removed_per_layer": reduced.removed,
            "tokens_kept_per_layer": [r["tokens_kept"] for r in rows],
            "layers": rows,
            "block_flops_before": before,
            "block_flops_after": after,
            "block_flops_ratio": round(before / after, 4),
        }
        if history is not None:
            measured["finetune_loss_per_epoch"] = history
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)


class TokenMerge(_TokenStage):
    kind = "tokens.merge"
    Config = TokenMergeConfig
    method = "merge"


class TokenPrune(_TokenStage):
    kind = "tokens.prune"
    Config = TokenPruneConfig
    method = "prune"
