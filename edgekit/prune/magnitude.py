"""Stages `prune.magnitude` (unstructured) and `prune.nm` (N:M semi-structured, e.g. 2:4).

Both zero weights of Conv/Linear layers in place (the architecture is unchanged, so there is
no history to replay: the zeros travel in the state dict and the exported initializers).
`prune.magnitude` can prune gradually: sparsity follows a polynomial schedule over `steps`
steps with `finetune` epochs after each; pruned weights stay zero while training.

Zeros alone do not make a dense kernel faster: ONNX Runtime and OpenVINO CPU kernels run these
models at the same speed as the dense ones. What they buy is compressibility, and, for 2:4,
a format that GPUs with sparse tensor cores can run (TensorRT with sparse weights enabled)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from edgekit.core.strict import Strict
from edgekit.errors import StageError
from edgekit.finetune.stage import TrainSpec, apply_masks, train, training_data
from edgekit.prune import common
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState


class ScheduleSpec(Strict):
    steps: int = Field(1, ge=1, le=100)
    initial: float = Field(0.0, ge=0.0, lt=1.0)
    power: float = Field(3.0, gt=0.0, le=10.0)


class MagnitudeConfig(StageConfig):
    kind: Literal["prune.magnitude"]
    sparsity: float = Field(..., gt=0.0, lt=1.0, description="final share of zero weights")
    method: Literal["global", "layerwise", "lamp"] = "lamp"
    ignore: list[str] = Field([], description="Conv/Linear layers left dense: names or 're:' regexes")
    schedule: ScheduleSpec = ScheduleSpec()
    finetune: Optional[TrainSpec] = Field(None, description="training after every pruning step")

    @model_validator(mode="after")
    def _check(self) -> "MagnitudeConfig":
        if self.schedule.initial > self.sparsity:
            raise ValueError(f"schedule.initial {self.schedule.initial} is above sparsity {self.sparsity}")
        return self


class NMConfig(StageConfig):
    kind: Literal["prune.nm"]
    n: int = Field(2, ge=1)
    m: int = Field(4, ge=2, le=32)
    ignore: list[str] = Field([], description="Conv/Linear layers left dense: names or 're:' regexes")
    finetune: Optional[TrainSpec] = Field(None, description="masked training after the cut")

    @model_validator(mode="after")
    def _check(self) -> "NMConfig":
        if self.n >= self.m:
            raise ValueError(f"n must be below m (n of every m weights kept), got n={self.n}, m={self.m}")
        return self


def _weights(model: Any, ignore: list[str]) -> dict[str, Any]:
    skip = common.select(model, ignore, "ignore")
    return {n: m.weight for n, m in common.prunable_layers(model).items() if n not in skip}


def _sparsity(masks: dict[str, Any]) -> dict[str, float]:
    return {n: round(1.0 - float(k.float().mean()), 6) for n, k in masks.items()}


class PruneMagnitude(Stage):
    kind = "prune.magnitude"
    Config = MagnitudeConfig

    def apply(self, state: ModelState, cfg: MagnitudeConfig) -> tuple[ModelState, StageRecord]:
        from edgekit.prune.masks import sparsity_masks
        from edgekit.prune.schedule import polynomial

        model = common.working_copy(state, self.kind)
        before = common.snapshot(model, state.example)
        weights = _weights(model, cfg.ignore)
        if not weights:
            raise StageError(f"{self.kind}: no Conv/Linear layer is left to prune after ignore")
        targets = polynomial(cfg.schedule.initial, cfg.sparsity, cfg.schedule.steps, cfg.schedule.power)
        data = training_data(cfg.finetune, state) if cfg.finetune is not None else None
        teacher = state.source_model() if cfg.finetune is not None and cfg.finetune.distill else None
        tick = state.progress(self.kind, len(targets))
        steps = []
        masks: dict[str, Any] = {}
        for target in targets:
            masks = sparsity_masks(weights, target, cfg.method)
            apply_masks(model, masks)
            step: dict[str, Any] = {"target": round(target, 6),
                                    "sparsity": round(1 - sum(int(k.sum()) for k in masks.values())
                                                      / sum(k.numel() for k in masks.values()), 6)}
            if data is not None:
                step["loss_per_epoch"] = train(model, data[0], data[1], cfg.finetune, teacher, masks)
            steps.append(step)
            tick(1)
        state.torch_model = model.eval()
        measured = {**common.summary(None, model, state.example, before), "steps": steps,
                    "layer_sparsity": _sparsity(masks)}
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)


class PruneNM(Stage):
    kind = "prune.nm"
    Config = NMConfig

    def apply(self, state: ModelState, cfg: NMConfig) -> tuple[ModelState, StageRecord]:
        import hashlib

        import numpy as np

        from edgekit.prune.masks import nm_layout, nm_mask

        model = common.working_copy(state, self.kind)
        before = common.snapshot(model, state.example)
        masks, skipped, record = {}, {}, {}
        for name, w in _weights(model, cfg.ignore).items():
            width = nm_layout(w).shape[-1]
            if width % cfg.m:
                skipped[name] = f"input dimension {width} is not divisible by {cfg.m}"
                continue
            masks[name] = nm_mask(w, cfg.n, cfg.m)
        if not masks:
            raise StageError(f"{self.kind}: no layer has an input dimension divisible by m={cfg.m} "
                             f"(skipped: {', '.join(skipped) or 'none'})")
        apply_masks(model, masks)
        loss = None
        if cfg.finetune is not None:
            inputs, targets = training_data(cfg.finetune, state)
            teacher = state.source_model() if cfg.finetune.distill else None
            loss = train(model, inputs, targets, cfg.finetune, teacher, masks)
        for name, k in masks.items():
            packed = np.packbits(k.numpy().astype(np.uint8).ravel())
            record[name] = {"shape": list(k.shape), "groups_along": "input", "kept": int(k.sum()),
                            "mask_sha256": hashlib.sha256(packed.tobytes()).hexdigest()}
        state.torch_model = model.eval()
        measured: dict[str, Any] = {**common.summary(None, model, state.example, before),
                                    "pattern": f"{cfg.n}:{cfg.m}", "masks": record, "skipped": skipped}
        if loss is not None:
            measured["loss_per_epoch"] = loss
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
