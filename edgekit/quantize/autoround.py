"""AutoRound (`quantize.weight_only` with `algorithm: autoround`): Intel's sign-gradient tuning
of each weight's rounding and each group's clipping, block by block against the float block's
output on calibration text, by the `auto-round` package.

What comes back is read off the tuned model rather than off a file auto-round writes: each
quantized Linear keeps its fp16 `scale` and `zp` per group, and its weight holds the rounded
value, so the integers are round(weight / scale) + zp. They are checked to rebuild that weight
before anything is placed, so a change in how a later auto-round stores its result fails here
in one line instead of shipping other numbers than it tuned."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
from pydantic import Field

from edgekit.core.backends import require
from edgekit.core.progress import Progress, block_ticks
from edgekit.core.strict import Strict
from edgekit.errors import StageError
from edgekit.quantize.lm_layers import QLayer
from edgekit.quantize.lm_mixed import Choice


class AutoRoundSpec(Strict):
    iters: int = Field(50, ge=0, description="tuning steps per decoder block (auto-round's own default is 200); "
                                             "0 is its RTN with the scale search")
    batch_size: int = Field(4, ge=1, description="calibration windows per step")
    lr: Optional[float] = Field(None, gt=0.0, le=1.0, description="rounding learning rate; auto-round's 1/iters if "
                                                                   "unset")
    seed: int = 42
    compile: bool = Field(False, description="torch.compile the block forward (needs a C compiler; a minute of "
                                             "compiling first)")


@contextmanager
def _quiet() -> Iterator[None]:
    """auto-round logs a line per block and draws its own bar; edgekit's progress says the same
    once. Its bar is the orchestrator module's `tqdm` name (TQDM_DISABLE is read only when tqdm
    is imported), so that name is swapped for a silent one while the run lasts."""
    import functools

    from auto_round.compressors import orchestrator

    bar = orchestrator.tqdm
    orchestrator.tqdm = functools.partial(bar, disable=True)
    loggers = [logging.getLogger(n) for n in ("autoround", "auto_round")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        orchestrator.tqdm = bar
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _import() -> Any:
    """auto_round, without what its import does to every logger: it replaces
    logging.Logger.warning_once / info_once (transformers' own) with versions that print through
    its handler whatever the calling logger's level, so transformers' load-time notes would show
    in edgekit's output for the rest of the run."""
    saved = {n: logging.Logger.__dict__[n] for n in ("warning_once", "info_once") if n in logging.Logger.__dict__}
    # torchao, which it imports, warns of CUDA kernels it cannot load and of a torch deprecation
    noisy = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(logging.ERROR)
    try:
        return require("auto_round", extra="inc", why="quantize.weight_only algorithm autoround")
    finally:
        for lg, lv in zip(noisy, levels):
            lg.setLevel(lv)
        for n in ("warning_once", "info_once"):
            if n in saved:
                setattr(logging.Logger, n, saved[n])
            elif n in logging.Logger.__dict__:
                delattr(logging.Logger, n)


def layer_config(choices: dict[str, Choice], bits: int, group: int, symmetric: bool) -> dict[str, dict[str, Any]]:
    """auto-round's per-layer table for every layer that differs from the stage's default
    (16 bits keeps a layer float)."""
    out: dict[str, dict[str, Any]] = {}
    for name, c in choices.items():
        if c.bits == 16:
            out[name] = {"bits": 16, "data_type": "float"}
        elif (c.bits, c.group) != (bits, group):
            out[name] = {"bits": c.bits, "group_size": c.group, "sym": symmetric}
    return out


def integers(name: str, linear: Any, bits: int, group: int) -> QLayer:
    """The layer's integers, fp16 scales and zero points, from what auto-round left on it."""
    import torch

    scale, zp = getattr(linear, "scale", None), getattr(linear, "zp", None)
    if scale is None or zp is None:
        raise StageError(f"{name}: auto-round left no scale / zero point on this layer (a version whose result "
                         "edgekit cannot read; auto-round 0.16 is the one measured)")
    w = linear.weight.detach().to(torch.float32).numpy()
    out_f, in_f = w.shape
    scales = scale.detach().to(torch.float16).reshape(out_f, -1).numpy() if torch.is_tensor(scale) \
        else np.full((out_f, in_f // group), scale, np.float16)
    if scales.shape != (out_f, in_f // group):
        raise StageError(f"{name}: auto-round's scales are {scales.shape}, expected {(out_f, in_f // group)} for "
                         f"group {group}")
    zeros = (zp.detach().to(torch.float32).reshape(out_f, -1).numpy() if torch.is_tensor(zp)
             else np.full(scales.shape, float(zp), np.float32))
    s = np.repeat(scales.astype(np.float32), group, axis=1)
    z = np.repeat(zeros, group, axis=1)
    # a symmetric group's scale is signed (its largest-magnitude weight maps to -2**(bits-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s != 0, np.rint(w / np.where(s != 0, s, 1.0)), 0.0) + z
    top = 2 ** bits - 1
    if q.min() < 0 or q.max() > top or zeros.min() < 0 or zeros.max() > top:
        raise StageError(f"{name}: auto-round's weights fall outside the {bits}-bit grid of its own scales "
                         f"(integers {q.min():.0f}..{q.max():.0f}, allowed 0..{top})")
    layer = QLayer(q.astype(np.uint8), scales, np.rint(zeros).astype(np.uint8), bits, group)
    # the tuned weight is stored in the model's dtype (bf16 under auto-round's amp), rounded to
    # its precision: (q - z) * s of up to 15 steps in bf16 is off by up to 15 * 2**-8 = 0.06 of
    # a step, far below the half step that would change an integer; so it must rebuild within
    # 5% of a step plus that rounding (a hypothesis test found the bare 5% too tight for bf16)
    err = np.abs(layer.dequantized() - w) / np.maximum(np.abs(s), np.finfo(np.float32).tiny)
    err -= np.abs(q - z) * float(torch.finfo(linear.weight.dtype).eps)
    if float(err.max()) > 0.05:
        raise StageError(f"{name}: auto-round's weight is not on its own grid (off by {float(err.max()):.2f} of a "
                         "step); its integers cannot be read back")
    return layer


def quantize(model: Any, tokenizer: Any, choices: dict[str, Choice], bits: int, group: int, symmetric: bool,
             windows: list[np.ndarray], spec: AutoRoundSpec,
             progress: Progress) -> tuple[dict[str, QLayer], dict[str, Any]]:
    """Tunes `model` in place; returns each quantized layer's integers and what the run did."""
    import torch

    auto_round = _import()
    seqlen = int(np.asarray(windows[0]).size)
    data = [{"input_ids": torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)),
             "attention_mask": torch.ones((1, seqlen), dtype=torch.long)} for w in windows]
    kwargs: dict[str, Any] = {} if spec.lr is None else {"lr": spec.lr}
    hooks = block_ticks(model, progress, f"AutoRound {bits}-bit group {group}: {spec.iters} steps per block on "
                                         f"{len(windows)} windows (minutes on a real model)")
    try:
        with _quiet():
            # amp off: tuning in fp32 gives the same result on every CPU class (bf16 autocast
            # runs natively only where the CPU has it)
            rounder = auto_round.AutoRound(
                model, tokenizer, bits=bits, group_size=group, sym=symmetric, iters=spec.iters,
                nsamples=len(windows), seqlen=seqlen, batch_size=min(spec.batch_size, len(windows)), dataset=data,
                device_map="cpu", amp=False, seed=spec.seed, enable_torch_compile=spec.compile,
                layer_config=layer_config(choices, bits, group, symmetric), **kwargs)
            tuned, _ = rounder.quantize()
    finally:
        for h in hooks:
            h.remove()
    modules = dict(tuned.named_modules())
    layers = {name: integers(name, modules[name], c.bits, c.group) for name, c in choices.items() if c.bits != 16}
    return layers, {"iters": spec.iters, "batch_size": min(spec.batch_size, len(windows)), "seqlen": seqlen,
                    "windows": len(windows)}
