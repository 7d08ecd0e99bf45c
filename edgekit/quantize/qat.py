"""Stage `finetune.qat`: quantization-aware training of an encoder (CNN, ViT, BERT) for the ONNX
Runtime quantizer that follows it in the recipe (`quantize.int8`, static QDQ, or
`quantize.int4`, MatMulNBits). It lives with the quantizers because it trains on their grids
(edgekit.quantize.fake_quant) and calibrator; the training loop is edgekit.finetune's.

The stage reads that quantizer's settings and trains the float model with its grid in the
forward pass: every weight the quantizer will round is rounded the same way (per channel or per
tensor for INT8, 7-bit under `reduce_range`; blocks of `group_size` inputs for INT4, symmetric or
not), and for INT8 the inputs of those layers are rounded per tensor over their running range.
Rounding passes gradients straight through. The loss is by default pure distillation from the
float model (KL on logits, MSE on embeddings), so training recovers what quantization lost rather
than training the model further. At the end the weights are snapped onto their grids and the
plain layers put back: export writes ordinary float weights that the quantizer turns into
exactly the integers training used (edgekit.quantize.fake_quant says why that holds).

Which layers: INT8 `cnn` preset Conv and Linear, `transformer` preset Linear only (it quantizes
MatMul/Gemm), explicit `op_types` as they say (`auto` resolved on the torch model, see
`torch_preset`); INT4 Linear (and embedding tables with
`embeddings: true`). A node the quantizer excludes by name keeps its float weight in the
artifact, slightly moved by snapping (ONNX node names cannot be mapped back to torch modules
in general). The model trains in eval mode: dropout off, batch norm statistics frozen (the
exporter folds them), as the artifact runs."""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from edgekit.finetune.stage import DistillSpec, TrainSpec
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState

QUANTIZERS = ("quantize.int8", "quantize.int4")
FIDELITY_SAMPLES = 256


class QATConfig(StageConfig, TrainSpec):
    kind: Literal["finetune.qat"]
    # measured: 1e-4 made all-MiniLM-L6-v2's INT4 distillation loss climb; 3e-5 took it 0.979 -> 0.992
    lr: float = Field(3e-5, gt=0.0, le=1.0)
    distill: Optional[DistillSpec] = DistillSpec(weight=1.0, temperature=1.0)
    quantizer: Optional[str] = Field(None, description="artifact name of the quantize.int8 / quantize.int4 stage "
                                                       "to train for (default: the first after this stage)")

    def recipe_problem(self, stages: list[Any], index: int, classes: list[str]) -> Optional[str]:
        """Why this stage cannot train for the recipe's quantizer, or None (checked at validate
        time, before any work)."""
        try:
            q = paired_quantizer(stages, index, self.quantizer)
        except ValueError as exc:
            return str(exc)
        if q.kind == "quantize.int8":
            from edgekit.quantize.overflow import choose_overflow_fix

            chosen = choose_overflow_fix(q.overflow_fix, q.weights.dtype, classes)
            if q.scheme_measured(chosen):
                return (f"quantize.int8 {q.name!r} picks its weight grid at run time (overflow_fix auto with "
                        f"{', '.join(chosen.cpus)} in deploy.cpus, some of which saturate full-range int8); set its "
                        "overflow_fix to reduce_range, reduce_range_dw8, runtime or none, or narrow deploy.cpus, so "
                        "that training uses the grid that ships")
        return None


def paired_quantizer(stages: list[Any], index: int, name: Optional[str]) -> Any:
    """The quantize.int8 / quantize.int4 stage config `stages[index]` trains for."""
    later = [s for s in stages[index + 1:] if s.kind in QUANTIZERS]
    if name is not None:
        named = [s for s in later if s.name == name]
        if not named:
            allowed = ", ".join(repr(s.name) for s in later) or "none"
            raise ValueError(f"quantizer: no quantize.int8 / quantize.int4 stage named {name!r} after it; "
                             f"allowed: {allowed}")
        return named[0]
    if not later:
        raise ValueError("needs a quantize.int8 or quantize.int4 stage after it (after export.onnx) to train for; "
                         "for OpenVINO or generation targets use their own quantizers")
    return later[0]


def torch_preset(q: Any, model: Any) -> str:
    """quantize.int8's preset as it will resolve: `auto` picks `transformer` on the ONNX graph when
    it holds softmax / layer norm / attention ops; on the torch model a LayerNorm or an attention
    module stands for them (attention written out by hand still has its layer norms)."""
    import torch

    if q.preset != "auto":
        return q.preset
    for m in model.modules():
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.MultiheadAttention)) or "Attention" in type(m).__name__:
            return "transformer"
    return "cnn"


def grids(q: Any, classes: list[str], preset: str = "cnn") -> tuple[Any, Optional[Any], set[str]]:
    """(weight grid, activation grid or None, torch layer kinds quantized) of quantizer `q`, whose
    INT8 preset resolves to `preset`."""
    from edgekit.core.backends import require
    from edgekit.quantize.fake_quant import Grid

    qu = require("onnxruntime.quantization.quant_utils", extra="onnx")
    if q.kind == "quantize.int4":
        if q.symmetric:
            wgrid = Grid(-8, 7, True, "block", q.group_size, signed_max=True)
        else:
            wgrid = Grid(0, 15, False, "block", q.group_size)
        return wgrid, None, {"linear", "embedding"} if q.embeddings else {"linear"}
    from edgekit.quantize.overflow import choose_overflow_fix
    from edgekit.quantize.static_int8 import TRANSFORMER_OPS

    reduce = choose_overflow_fix(q.overflow_fix, q.weights.dtype, classes).reduce_range
    qt = qu.QuantType
    wt = qt.QInt8 if q.weights.dtype == "int8" else qt.QUInt8
    at = qt.QUInt8 if q.activations.dtype == "uint8" else qt.QInt8
    wlo, whi = qu.get_qmin_qmax_for_qType(wt.tensor_type, reduce_range=reduce, symmetric=q.weights.symmetric)
    alo, ahi = qu.get_qmin_qmax_for_qType(at.tensor_type, symmetric=q.activations.symmetric)
    wgrid = Grid(int(wlo), int(whi), q.weights.symmetric,
                 "channel" if q.weights.granularity == "per_channel" else "tensor")
    agrid = Grid(int(alo), int(ahi), q.activations.symmetric)
    preset_ops = q.op_types or (TRANSFORMER_OPS if preset == "transformer" else ["Conv", "MatMul", "Gemm"])
    kinds = ({"conv"} if {"Conv", "ConvTranspose"} & set(preset_ops) else set()) | \
            ({"linear"} if {"MatMul", "Gemm"} & set(preset_ops) else set())
    return wgrid, agrid, kinds


def depthwise_grid(q: Any, classes: list[str]) -> Optional[Any]:
    """The full-range grid that depthwise convolutions keep under `overflow_fix:
    reduce_range_dw8` (the other layers train on 7 bits), or None."""
    from edgekit.quantize.overflow import DW8, choose_overflow_fix

    if q.kind != "quantize.int8" or choose_overflow_fix(q.overflow_fix, q.weights.dtype, classes).fix != DW8:
        return None
    full = q.model_copy(update={"overflow_fix": "none"})
    return grids(full, classes)[0]


def _depthwise(m: Any) -> bool:
    """One input and one output channel per group: what edgekit.quantize.graph.depthwise_weights
    finds in the exported graph."""
    groups = getattr(m, "groups", 1)
    return groups > 1 and m.in_channels == groups and m.out_channels == groups


def _kind_of(m: Any) -> Optional[str]:
    import torch

    if isinstance(m, torch.nn.Linear):
        return "linear"
    if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return "conv"
    if isinstance(m, torch.nn.Embedding):
        return "embedding"
    return None


def wrap(model: Any, wgrid: Any, agrid: Optional[Any], kinds: set[str], dw_grid: Optional[Any] = None
         ) -> dict[str, Any]:
    """Swap every layer of `kinds` for a fake-quantizing wrapper, in place; name -> wrapper.
    Depthwise convolutions train on `dw_grid` where one is given."""
    import torch
    import torch.nn.functional as F

    from edgekit.quantize.calibrate import Histogram
    from edgekit.quantize.fake_quant import fake_quant, fake_quant_weight, scale_zero

    class _QAT(torch.nn.Module):
        def __init__(self, inner: Any, kind: str) -> None:
            super().__init__()
            self.inner, self.kind = inner, kind
            self.grid = dw_grid if dw_grid is not None and kind == "conv" and _depthwise(inner) else wgrid
            self.quantizes_input = agrid is not None and kind != "embedding"
            self.hist: Optional[Histogram] = None  # set while calibrating: inputs are recorded, not rounded
            self.scale: Any = None
            self.zero: Any = None

        def set_range(self, lo: float, hi: float) -> None:
            self.scale, self.zero = scale_zero(torch.tensor(lo), torch.tensor(hi), agrid)

        def forward(self, x: Any) -> Any:
            if self.hist is not None:
                self.hist.update(x.detach().numpy())
            elif self.quantizes_input:
                x = fake_quant(x, self.scale, self.zero, agrid)
            w = fake_quant_weight(self.inner.weight, self.grid)
            m = self.inner
            if self.kind == "linear":
                return F.linear(x, w, m.bias)
            if self.kind == "conv":
                return m._conv_forward(x, w, m.bias)
            return F.embedding(x, w, m.padding_idx, m.max_norm, m.norm_type, m.scale_grad_by_freq, m.sparse)

    modules = dict(model.named_modules())
    out = {}
    for name, m in list(modules.items()):
        kind = _kind_of(m)
        if kind not in kinds or not name:
            continue
        out[name] = _QAT(m, kind)
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, out[name])
    return out


def calibrate(model: Any, wrapped: dict[str, Any], samples: list[dict[str, Any]], names: list[str],
              method: str, percentile: float) -> None:
    """Set every quantized input's range the way the quantizer's calibrator will: one histogram
    per tensor over the same samples, fed one at a time as it feeds them (the float activations,
    weights on their grid), the range by the same method. Run again after every epoch, so the
    ranges follow the weights as they train."""
    import torch

    from edgekit.quantize.calibrate import Histogram, choose_range

    layers = [w for w in wrapped.values() if w.quantizes_input]
    if not layers:
        return
    for w in layers:
        w.hist = Histogram()
    try:
        with torch.no_grad():
            for s in samples:
                model(*[torch.from_numpy(np.ascontiguousarray(s[k])) for k in names])
        for w in layers:
            w.set_range(*choose_range(w.hist, method, percentile))
    finally:
        for w in layers:
            w.hist = None


def unwrap(model: Any, wrapped: dict[str, Any]) -> None:
    """Put the plain layers back, their weights snapped onto their grids."""
    from edgekit.quantize.fake_quant import snap

    modules = dict(model.named_modules())
    for name, w in wrapped.items():
        w.inner.weight.data = snap(w.inner.weight, w.grid)
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, w.inner)


def _fidelity(model: Any, teacher: Any, inputs: tuple[Any, ...]) -> dict[str, float]:
    """Fake-quantized model vs the float one on the first training samples: mean cosine, and
    top-1 agreement where the outputs are logits."""
    import torch

    from edgekit.checks import metrics

    n = min(FIDELITY_SAMPLES, len(inputs[0]))
    with torch.no_grad():
        ref = teacher(*[t[:n] for t in inputs]).numpy()
        got = model(*[t[:n] for t in inputs]).numpy()
    out = {"cosine_mean": round(float(metrics.cosine_per_sample(ref, got).mean()), 6)}
    if metrics.looks_like_logits(ref):
        out["top1_agreement"] = round(metrics.top1_agreement(ref, got), 6)
    return out


class FinetuneQAT(Stage):
    kind = "finetune.qat"
    Config = QATConfig

    def apply(self, state: ModelState, cfg: QATConfig) -> tuple[ModelState, StageRecord]:
        from edgekit.finetune.stage import train, training_data, zero_masks
        from edgekit.quantize.overflow import deploy_classes
        from edgekit.stages.torch_side import working_copy

        stages = list(state.recipe.stages)
        # the recipe's own config object; an equal copy (a sweep trial) finds the same position
        index = next((i for i, s in enumerate(stages) if s is cfg), None)
        index = index if index is not None else next((i for i, s in enumerate(stages) if s == cfg), -1)
        q = paired_quantizer(stages, index, cfg.quantizer)
        if q.kind == "quantize.int8" and (state.calibration is None or not len(state.calibration)):
            from edgekit.errors import DataError

            raise DataError(f"{self.kind}: {q.kind} {q.name!r} calibrates its activation ranges, and training "
                            "uses the same ranges: set data.calibration in the recipe")
        model = working_copy(state, self.kind)
        preset = torch_preset(q, model) if q.kind == "quantize.int8" else None
        wgrid, agrid, kinds = grids(q, deploy_classes(state), preset or "cnn")
        teacher = state.source_model()
        inputs, targets = training_data(cfg, state)
        masks = zero_masks(model)
        dw_grid = depthwise_grid(q, deploy_classes(state))
        wrapped = wrap(model, wgrid, agrid, kinds, dw_grid)
        if not wrapped:
            from edgekit.errors import StageError

            raise StageError(f"{self.kind}: the model has no {' / '.join(sorted(kinds))} layer for {q.kind} "
                             f"{q.name!r} to quantize; nothing to train")
        teacher.eval()
        model.eval()

        def recalibrate() -> None:
            if agrid is not None:
                n = q.samples or len(state.calibration)
                calibrate(model, wrapped, state.calibration.samples[:n], list(state.example),
                          q.activations.calibration, q.activations.percentile)

        recalibrate()
        before = _fidelity(model, teacher, inputs)
        history = train(model, inputs, targets, cfg, teacher, masks,
                        state.progress(f"QAT for {q.kind} {q.name!r}: {cfg.epochs} epochs on {len(inputs[0])} "
                                       "samples", cfg.epochs), train_mode=False, epoch_end=recalibrate)
        after = _fidelity(model, teacher, inputs)
        unwrap(model, wrapped)
        state.torch_model = model
        counts = {k: sum(1 for w in wrapped.values() if w.kind == k) for k in sorted(kinds)}
        measured: dict[str, Any] = {
            "for": f"{q.kind} {q.name!r}", "preset": preset, "weight_grid": wgrid.describe(),
            **({"depthwise_weight_grid": dw_grid.describe(),
                "depthwise_layers": sum(1 for w in wrapped.values() if w.grid is dw_grid)} if dw_grid else {}),
            "activation_grid": agrid.describe() if agrid is not None else None,
            "layers": counts, "samples": int(len(inputs[0])), "loss_per_epoch": history,
            "fake_quant_fidelity_before": before, "fake_quant_fidelity_after": after,
        }
        if cfg.data == "digits":
            from edgekit.models.train import accuracy

            measured["digits_test_top1_torch_snapped"] = round(accuracy(model), 4)
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
