"""Stage `finetune`: recover accuracy after pruning, before export.

Data: `digits` (the built-in labelled training split the zoo's digits models were trained on),
`calibration` (the recipe's data.calibration, with its labels if it has them), or a user
entrypoint `pkg.mod:fn` returning `(inputs, targets)`: inputs a dict input name -> array with
the samples stacked on axis 0 (or one array for a one-input model), targets an array or None.
Loss: `auto` (cross-entropy on integer labels for logits, mean squared error otherwise) or a
user entrypoint `pkg.mod:fn(outputs, targets) -> scalar tensor`. Optional distillation from the
unpruned model (the model as loaded): KL on temperature-softened logits, MSE for other outputs.
Weights that are exactly zero when the stage starts (unstructured or N:M pruning) stay zero."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import Field, field_validator

from edgekit.core.strict import Strict
from edgekit.errors import DataError, RecipeError, first_line
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState

ENTRYPOINT = r"^[\w.]+:[\w.]+$"


class DistillSpec(Strict):
    weight: float = Field(0.5, ge=0.0, le=1.0, description="share of the loss from the teacher (1: distil only)")
    temperature: float = Field(2.0, gt=0.0, le=20.0)
    # auto: KL for outputs shaped like logits, MSE otherwise; an embedding model whose metric is
    # cosine fidelity learns it best from `cosine` (its 384 outputs look like logits by shape)
    loss: Literal["auto", "kl", "mse", "cosine"] = "auto"


class TrainSpec(Strict):
    """How to train: the `finetune` stage's settings, also nested in pruning stages that
    interleave training with pruning steps."""

    epochs: int = Field(..., ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    batch: int = Field(64, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    data: str = Field("digits", description="digits | calibration | 'pkg.mod:fn' -> (inputs, targets)")
    loss: str = Field("auto", description="auto | 'pkg.mod:fn(outputs, targets) -> loss'")
    distill: Optional[DistillSpec] = None
    samples: Optional[int] = Field(None, ge=1, description="use only the first N training samples")
    seed: int = 0

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        import re

        if v not in ("digits", "calibration") and not re.fullmatch(ENTRYPOINT, v):
            raise ValueError(f"got {v!r}; allowed: 'digits', 'calibration' or an entrypoint 'pkg.mod:fn'")
        return v

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        import re

        if v != "auto" and not re.fullmatch(ENTRYPOINT, v):
            raise ValueError(f"got {v!r}; allowed: 'auto' or an entrypoint 'pkg.mod:fn'")
        return v


class FinetuneConfig(StageConfig, TrainSpec):
    kind: Literal["finetune"]


def _entrypoint(ref: str, field: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"{field}: cannot import {ref!r}: {first_line(exc)}") from exc
    if not callable(obj):
        raise RecipeError(f"{field}: {ref!r} is not callable")
    return obj


def training_data(cfg: TrainSpec, state: ModelState) -> tuple[tuple[Any, ...], Optional[Any]]:
    """(inputs stacked per model input, targets or None) as tensors."""
    import torch

    names = list(state.example)
    if cfg.data == "digits":
        from edgekit.data.digits import split

        ex = state.example[names[0]]
        if len(names) != 1 or tuple(ex.shape[1:]) != (1, 32, 32):
            raise DataError(f"finetune.data: digits feeds one input of shape [N, 1, 32, 32]; the model takes "
                            f"{ {k: list(v.shape) for k, v in state.example.items()} }")
        x, y, _ = split()["train"]
        inputs, targets = (x,), y
    elif cfg.data == "calibration":
        ds = state.calibration
        if ds is None or not len(ds):
            raise DataError("finetune.data: 'calibration' but the recipe has no data.calibration")
        inputs = tuple(np.concatenate([s[k] for s in ds.samples]) for k in names)
        targets = ds.labels
    else:
        got = _entrypoint(cfg.data, "finetune.data")()
        if not (isinstance(got, tuple) and len(got) == 2):
            raise DataError(f"finetune.data: {cfg.data} must return (inputs, targets), got {type(got).__name__}")
        raw, targets = got
        if not isinstance(raw, dict):
            raw = {names[0]: raw}
        missing = [k for k in names if k not in raw]
        if missing:
            raise DataError(f"finetune.data: {cfg.data} returned no {missing[0]!r}; the model takes {names}")
        inputs = tuple(np.asarray(raw[k]).astype(state.example[k].dtype) for k in names)
        n = {len(a) for a in inputs}
        if len(n) != 1 or (targets is not None and len(targets) not in n):
            raise DataError(f"finetune.data: {cfg.data} returned inputs/targets of different lengths")
    if cfg.samples is not None:
        inputs = tuple(a[: cfg.samples] for a in inputs)
        targets = None if targets is None else targets[: cfg.samples]
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs)
    return tensors, None if targets is None else torch.from_numpy(np.asarray(targets))


def zero_masks(model: Any) -> dict[str, Any]:
    """Masks of the Conv/Linear weights that already hold exact zeros (earlier sparsity)."""
    from edgekit.stages.torch_side import prunable_layers

    out = {}
    for name, m in prunable_layers(model).items():
        mask = m.weight.detach() != 0
        if not bool(mask.all()):
            out[name] = mask
    return out


def apply_masks(model: Any, masks: dict[str, Any]) -> None:
    import torch

    layers = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            layers[name].weight.mul_(mask)


def _auto_loss(out: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    if not targets.dtype.is_floating_point and out.shape[:-1] == targets.shape:
        return F.cross_entropy(out.flatten(0, -2), targets.flatten().long())
    return F.mse_loss(out, targets.to(out.dtype).reshape(out.shape))


def _distill_loss(out: Any, teacher: Any, spec: DistillSpec) -> Any:
    import torch.nn.functional as F

    from edgekit.checks import metrics

    if spec.loss == "cosine":
        return (1.0 - F.cosine_similarity(out.flatten(1), teacher.flatten(1), dim=1)).mean()
    if spec.loss == "kl" or (spec.loss == "auto" and metrics.looks_like_logits(teacher.numpy())):
        t = spec.temperature
        return F.kl_div((out / t).log_softmax(-1), (teacher / t).softmax(-1), reduction="batchmean") * t * t
    return F.mse_loss(out, teacher)


def train(model: Any, inputs: tuple[Any, ...], targets: Optional[Any], cfg: TrainSpec,
          teacher: Optional[Any] = None, masks: Optional[dict[str, Any]] = None,
          tick: Callable[[int], None] = lambda n: None, epochs: Optional[int] = None,
          train_mode: bool = True, epoch_end: Callable[[], None] = lambda: None) -> list[float]:
    """Train `model` in place; mean loss per epoch. `masks` are re-applied after every step.
    `train_mode=False` keeps dropout off and batch norm statistics frozen while training;
    `epoch_end` runs after each epoch (in that mode)."""
    import torch

    if targets is None and cfg.distill is None:
        raise DataError(f"finetune.data: {cfg.data!r} has no labels; add finetune.distill to learn from the "
                        "unpruned model, or give data with targets")
    user_loss = None if cfg.loss == "auto" else _entrypoint(cfg.loss, "finetune.loss")
    torch.manual_seed(cfg.seed)
    teacher_out = None
    if cfg.distill is not None:
        if teacher is None:
            raise DataError("finetune.distill: there is no unpruned model to distil from")
        teacher.eval()
        with torch.no_grad():
            teacher_out = torch.cat([teacher(*[t[i : i + 256] for t in inputs])
                                     for i in range(0, len(inputs[0]), 256)])
    w = cfg.distill.weight if cfg.distill is not None else 0.0
    if targets is None:
        w = 1.0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(inputs[0])
    total_epochs = epochs or cfg.epochs
    steps = total_epochs * ((n + cfg.batch - 1) // cfg.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train(train_mode)
    try:
        for _ in range(total_epochs):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, cfg.batch):
                j = perm[i : i + cfg.batch]
                out = model(*[t[j] for t in inputs])
                loss = out.new_zeros(())
                if w < 1.0:
                    task = user_loss(out, targets[j]) if user_loss else _auto_loss(out, targets[j])
                    loss = loss + (1.0 - w) * task
                if w > 0.0:
                    loss = loss + w * _distill_loss(out, teacher_out[j], cfg.distill)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                if masks:
                    apply_masks(model, masks)
                total += float(loss.detach()) * len(j)
            history.append(round(total / n, 6))
            epoch_end()
            model.train(train_mode)
            tick(1)
    finally:
        model.eval()
    return history


class Finetune(Stage):
    kind = "finetune"
    Config = FinetuneConfig

    def apply(self, state: ModelState, cfg: FinetuneConfig) -> tuple[ModelState, StageRecord]:
        from edgekit.stages.torch_side import working_copy

        model = working_copy(state, self.kind)
        teacher = state.source_model() if cfg.distill is not None else None
        inputs, targets = training_data(cfg, state)
        masks = zero_masks(model)
        history = train(model, inputs, targets, cfg, teacher, masks, state.progress("finetune", cfg.epochs))
        state.torch_model = model
        measured: dict[str, Any] = {"samples": int(len(inputs[0])), "loss_per_epoch": history,
                                    "kept_zero_masks": sorted(masks)}
        if cfg.data == "digits":
            from edgekit.models.train import accuracy

            measured["digits_test_top1_torch"] = round(accuracy(model), 4)
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
