"""Distillation of a causal LM from a teacher on calibration windows: the loop that
`finetune.lm` (healing a pruned model) and `quantize.weight_only` with `algorithm: qat`
(training through fake quantization) share. One window per step, AdamW, a step and a time
budget, seeded, the loss of every step kept.

Why by hand and not transformers' Trainer: a few dozen to a few hundred steps on CPU with a
second model as teacher need nothing of its machinery, and a time budget and a recorded loss
curve are simpler to honour in a plain loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


def kl(teacher_logits: Any, student_logits: Any, t: float = 1.0) -> Any:
    """KL(teacher || student) of the next-token distributions at temperature t, mean per token,
    scaled by t^2 so that its gradients keep their size as t changes."""
    import torch

    p = torch.log_softmax(teacher_logits.to(torch.float32) / t, dim=-1)
    q = torch.log_softmax(student_logits.to(torch.float32) / t, dim=-1)
    return (p.exp() * (p - q)).sum(-1).mean() * t * t


def mean_kl(teacher: Any, student: Any, windows: list[Any], t: float = 1.0) -> float:
    """The distillation loss over all windows, without gradients: a record's before / after."""
    import torch

    with torch.no_grad():
        return float(np.mean([float(kl(teacher(x, use_cache=False).logits, student(x, use_cache=False).logits, t))
                              for x in windows]))


@dataclass
class Run:
    curve: list[float] = field(default_factory=list)
    stopped_by: str = "steps"
    seconds: float = 0.0


def distill(student: Any, teacher: Any, windows: list[Any], param_groups: list[dict[str, Any]], steps: int,
            max_s: Optional[float], seed: int, temperature: float, tick: Callable[[int], None]) -> Run:
    """Train the parameters in `param_groups` (AdamW groups: params, lr) so that the student's
    next-token distribution matches the teacher's, one randomly drawn window per step."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for g in param_groups for p in g["params"]]
    opt = torch.optim.AdamW(param_groups, weight_decay=0.0)
    run = Run()
    student.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        if max_s is not None and time.perf_counter() - t0 >= max_s:
            run.stopped_by = "max_s"
            break
        x = windows[int(rng.integers(len(windows)))]
        with torch.no_grad():
            target = teacher(x, use_cache=False).logits
        loss = kl(target, student(x, use_cache=False).logits, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run.curve.append(round(float(loss.detach()), 6))
        tick(1)
    student.eval()
    run.seconds = round(time.perf_counter() - t0, 2)
    return run
