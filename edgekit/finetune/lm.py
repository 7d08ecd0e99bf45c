"""Stage `finetune.lm`: heal a causal LM that `prune.depth` made smaller, by distillation from
the model as loaded (the unpruned teacher): KL divergence of the student's next-token
distribution from the teacher's, token by token, on calibration windows. All weights, or LoRA
adapters (peft) merged back into the weights afterwards, so that what the targets read is a
plain model of the same architecture.

Why distillation and not plain next-token loss: the teacher's full distribution carries far
more signal per token than the one observed token, which matters with the few thousand tokens of
calibration text a recipe has; and the goal is to be close to the unpruned model, which is what
verification measures. The loop is `edgekit.finetune.distill`'s, shared with QAT."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from edgekit.core.backends import require
from edgekit.core.strict import Strict
from edgekit.finetune import distill
from edgekit.errors import DataError, RecipeError
from edgekit.sources.causal_lm import save_lm_directory
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState


class LoraSpec(Strict):
    rank: int = Field(16, ge=1, le=512)
    alpha: float = Field(32.0, gt=0)
    modules: Optional[list[str]] = Field(
        None, min_length=1, description="names of the linear layers that get adapters (q_proj, down_proj, ...); "
                                        "unset: every linear layer but the lm_head, whatever the family calls them")


class FinetuneLMConfig(StageConfig):
    kind: Literal["finetune.lm"]
    steps: int = Field(100, ge=1, description="optimizer steps, one calibration window each")
    max_s: Optional[float] = Field(None, gt=0, description="stop after this many seconds, whatever steps are left")
    lr: float = Field(2e-4, gt=0.0, le=1.0)
    lora: Optional[LoraSpec] = Field(LoraSpec(), description="adapters to train and merge; null trains every weight")
    temperature: float = Field(1.0, gt=0.0, le=20.0)
    windows: Optional[int] = Field(None, ge=1, description="calibration windows trained on; all if unset")
    seed: int = 0


class FinetuneLM(Stage):
    kind = "finetune.lm"
    Config = FinetuneLMConfig

    def apply(self, state: ModelState, cfg: FinetuneLMConfig) -> tuple[ModelState, StageRecord]:
        import torch

        if state.causal_lm is None:
            raise RecipeError("finetune.lm heals a causal LM (model: hf or gguf of a *ForCausalLM); use finetune for "
                              "other models")
        if state.lm_teacher is None:
            raise RecipeError("finetune.lm distils from the unpruned model: put it after prune.depth (alone it would "
                              "distil the model from itself)")
        calib = state.calibration
        if calib is None or not len(calib):
            raise DataError("finetune.lm: needs calibration text to train on: set data.calibration, e.g. "
                            "{builtin: pydoc_topics, split: train, samples: 32, seq_len: 256}")
        n = cfg.windows or len(calib)
        if n > len(calib):
            raise RecipeError(f"windows: {n} is more than the {len(calib)} calibration windows; lower it or raise "
                              "data.calibration.samples")
        windows = [torch.as_tensor(np.asarray(s["input_ids"], np.int64).reshape(1, -1)) for s in calib.samples[:n]]
        torch.manual_seed(cfg.seed)  # LoRA's initial adapters
        teacher = dataclasses.replace(state.lm_teacher).torch_model()
        student = dataclasses.replace(state.causal_lm).torch_model()
        trained_params = sum(p.numel() for p in student.parameters())
        if cfg.lora is not None:
            peft = require("peft", extra="llm", why="LoRA adapters for finetune.lm")
            names = {n.rsplit(".", 1)[-1] for n, m in student.named_modules() if isinstance(m, torch.nn.Linear)}
            missing = [m for m in cfg.lora.modules or [] if m not in names]
            if missing:
                raise RecipeError(f"lora.modules: {missing[0]!r} is no linear layer's name in this "
                                  f"{state.causal_lm.architecture}; its linear layers are named "
                                  f"{', '.join(sorted(names))}")
            student = peft.get_peft_model(student, peft.LoraConfig(
                r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, target_modules=cfg.lora.modules or "all-linear",
                lora_dropout=0.0, bias="none"))
            trained_params = sum(p.numel() for p in student.parameters() if p.requires_grad)
        params = [p for p in student.parameters() if p.requires_grad]
        before = distill.mean_kl(teacher, student, windows, cfg.temperature)
        tick = state.progress(f"finetune.lm: distilling from the unpruned model, {cfg.steps} steps"
                              + (f" or {cfg.max_s:g} s" if cfg.max_s else "")
                              + f" ({'LoRA' if cfg.lora else 'every weight'}, {trained_params:,} trained)", cfg.steps)
        run = distill.distill(student, teacher, windows, [{"params": params, "lr": cfg.lr}], cfg.steps, cfg.max_s,
                              cfg.seed, cfg.temperature, tick)
        if cfg.lora is not None:
            student = student.merge_and_unload()
        after = distill.mean_kl(teacher, student, windows, cfg.temperature)
        scratch = state.scratch or Path(tempfile.mkdtemp(prefix="edgekit-finetune-lm-"))
        out = Path(scratch) / f"healed-{len(run.curve)}"
        save_lm_directory(student, state.causal_lm.directory, out)
        state.causal_lm = dataclasses.replace(state.causal_lm, directory=out)
        measured = {"steps": len(run.curve), "stopped_by": run.stopped_by, "train_s": run.seconds,
                    "trained_parameters": trained_params, "windows": n,
                    "kl_before": round(before, 6), "kl_after": round(after, 6), "loss_curve": run.curve}
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
