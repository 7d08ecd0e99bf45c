"""Quantization-aware training of a causal LM's linear layers for weight-only INT4 / INT8
(`quantize.weight_only` with `algorithm: qat`): a simplified EfficientQAT.

Each quantized layer computes with its weight rounded onto its grid (per group of `group`
inputs, symmetric or with a zero point), the rounding passed straight through to the gradient,
the scales themselves trainable (and rounded to fp16 as the targets store them, so that what is
trained is what ships). Scales start from a per-group search for the clipping ratio with the
least squared error. Then, as EfficientQAT's two phases:

1. weights and scales together (EfficientQAT trains them block by block against the float
   block's output; here end to end against the float model's next-token distribution, which
   needs no per-block bookkeeping and measured well on 2 cores within minutes);
2. scales (and zero points) alone, end to end.

The loss in both is the distillation KL from the float model (`edgekit.finetune.distill`). The
result is integers, fp16 scales and zero points per group: the same record INC's RTN and GPTQ
leave, which both generation targets place as they are.

Why by hand: Intel Neural Compressor 3.10 has no quantization-aware training for weight-only
LMs, and EfficientQAT is research code, not a library."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from pydantic import Field

from edgekit.core.strict import Strict
from edgekit.quantize.fake_quant import ste_round as _ste
from edgekit.quantize.lm_layers import QLayer
from edgekit.quantize.lm_mixed import Choice

CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)


class QATSpec(Strict):
    steps: int = Field(100, ge=0, description="phase 1: steps training weights and scales together")
    scale_steps: int = Field(50, ge=0, description="phase 2: steps training the scales (and zero points) alone")
    lr: float = Field(1e-5, gt=0.0, le=1.0, description="learning rate of the weights")
    scale_lr: float = Field(1e-3, gt=0.0, le=1.0, description="learning rate of the log scales (a relative "
                                                                "change per step) and zero points")
    max_s: Optional[float] = Field(None, gt=0, description="stop each phase after this many seconds")
    temperature: float = Field(1.0, gt=0.0, le=20.0)
    seed: int = 0


def _fp16(x: Any) -> Any:
    """Rounded to fp16 forward (how the targets store scales), identity backward."""
    import torch

    return x + (x.to(torch.float16).to(torch.float32) - x).detach()


def fake_quant_linear(linear: Any, choice: Choice, symmetric: bool) -> Any:
    """A module that computes like `linear` with its weight on the choice's grid, and holds the
    trainable weight, scales and (asymmetric) zero points."""
    import torch
    import torch.nn.functional as F

    class _FakeQuantLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = linear.weight.detach().to(torch.float32).clone()
            self.rows, self.cols = w.shape
            self.bits, self.group, self.symmetric = choice.bits, choice.group, symmetric
            self.weight = torch.nn.Parameter(w)
            self.bias = linear.bias
            scale, zero = init_grid(w, choice, symmetric)
            # in log space: Adam's step is then a relative change of the scale, whatever its size
            self.log_scale = torch.nn.Parameter(scale.log())
            self.zero = torch.nn.Parameter(zero) if zero is not None else None

        def _grid(self) -> tuple[Any, int, int]:
            if self.symmetric:
                return None, -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
            return self.zero, 0, 2 ** self.bits - 1

        def quantized(self) -> Any:
            g = self.weight.reshape(self.rows, self.cols // self.group, self.group)
            s = _fp16(self.log_scale.exp())
            zero, lo, hi = self._grid()
            if zero is None:
                q = torch.clamp(_ste(g / s), lo, hi) * s
            else:
                z = torch.clamp(_ste(zero), lo, hi)
                q = (torch.clamp(_ste(g / s) + z, lo, hi) - z) * s
            return q.reshape(self.rows, self.cols)

        def forward(self, x: Any) -> Any:
            return F.linear(x, self.quantized().to(x.dtype), self.bias)

        def export(self) -> QLayer:
            with torch.no_grad():
                g = self.weight.reshape(self.rows, self.cols // self.group, self.group)
                s = self.log_scale.exp().to(torch.float16).to(torch.float32)
                zero, lo, hi = self._grid()
                if zero is None:
                    ints = torch.clamp(torch.round(g / s), lo, hi) + 2 ** (self.bits - 1)
                    zeros = torch.full(s.shape, 2 ** (self.bits - 1))
                else:
                    zeros = torch.clamp(torch.round(zero), lo, hi)
                    ints = torch.clamp(torch.round(g / s) + zeros, lo, hi)
            return QLayer(ints.reshape(self.rows, self.cols).numpy().astype(np.uint8),
                          s[..., 0].numpy().astype(np.float16), zeros[..., 0].numpy().astype(np.uint8),
                          self.bits, self.group)

    return _FakeQuantLinear()


def init_grid(w: Any, choice: Choice, symmetric: bool) -> tuple[Any, Optional[Any]]:
    """Per-group scale (and zero point) with the clipping ratio, among CLIP_RATIOS, that rounds
    the group with the least squared error: the start both phases train from."""
    import torch

    rows, cols = w.shape
    g = w.reshape(rows, cols // choice.group, choice.group)
    best_err = torch.full(g.shape[:2] + (1,), float("inf"))
    best_s = torch.zeros(g.shape[:2] + (1,))
    best_z = torch.zeros(g.shape[:2] + (1,))
    for r in CLIP_RATIOS:
        if symmetric:
            qmax = 2 ** (choice.bits - 1) - 1
            s = (g.abs().amax(-1, keepdim=True) * r / qmax).clamp_min(1e-8).to(torch.float16).to(torch.float32)
            q = torch.clamp(torch.round(g / s), -qmax - 1, qmax) * s
            z = best_z
        else:
            qmax = 2 ** choice.bits - 1
            lo, hi = g.amin(-1, keepdim=True) * r, g.amax(-1, keepdim=True) * r
            s = ((hi - lo) / qmax).clamp_min(1e-8).to(torch.float16).to(torch.float32)
            z = torch.clamp(torch.round(-lo / s), 0, qmax)
            q = (torch.clamp(torch.round(g / s) + z, 0, qmax) - z) * s
        err = ((q - g) ** 2).sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_s = torch.where(better, s, best_s)
        best_z = torch.where(better, z, best_z)
    return best_s, (None if symmetric else best_z)


def _swap(model: Any, modules: dict[str, Any], name: str, new: Any) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(modules[parent] if parent else model, attr, new)


def train(model: Any, teacher: Any, choices: dict[str, Choice], symmetric: bool, windows: list[np.ndarray],
          spec: QATSpec, progress: Callable[[str, int], Callable[[int], None]]
          ) -> tuple[dict[str, QLayer], dict[str, Any]]:
    """Both phases on `model` (changed in place: its quantized layers are swapped for
    fake-quantized ones); returns every quantized layer's integers and the record."""
    import torch

    from edgekit.finetune import distill

    for p in model.parameters():
        p.requires_grad_(False)
    fq = {}
    modules = dict(model.named_modules())  # parents stay the same objects while children are swapped
    for name, c in choices.items():
        if c.bits == 16:
            continue
        fq[name] = fake_quant_linear(modules[name], c, symmetric)
        _swap(model, modules, name, fq[name])
    ids = [torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)) for w in windows]
    kl_init = distill.mean_kl(teacher, model, ids, spec.temperature)
    weights = [m.weight for m in fq.values()]
    grids = [p for m in fq.values() for p in (m.log_scale, m.zero) if p is not None]
    record: dict[str, Any] = {"kl_init": round(kl_init, 6), "layers": len(fq), "windows": len(ids)}
    phases = (("weights_and_scales", spec.steps, [{"params": weights, "lr": spec.lr},
                                                  {"params": grids, "lr": spec.scale_lr}]),
              ("scales", spec.scale_steps, [{"params": grids, "lr": spec.scale_lr}]))
    for phase, steps, groups in phases:
        if not steps:
            continue
        for p in weights:
            p.requires_grad_(phase == "weights_and_scales")
        for p in grids:
            p.requires_grad_(True)
        tick = progress(f"QAT {phase.replace('_', ' ')}: {steps} steps of distillation from the float model", steps)
        run = distill.distill(model, teacher, ids, groups, steps, spec.max_s, spec.seed, spec.temperature, tick)
        record[phase] = {"steps": len(run.curve), "stopped_by": run.stopped_by, "seconds": run.seconds,
                         "loss_curve": run.curve}
    for p in [*weights, *grids]:
        p.requires_grad_(False)
    record["kl_after"] = round(distill.mean_kl(teacher, model, ids, spec.temperature), 6)
    return {name: m.export() for name, m in fq.items()}, record
