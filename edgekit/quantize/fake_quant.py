"""The grids of edgekit's ONNX Runtime quantizers, as torch functions that training can see
through (`finetune.qat`).

Quantization-aware training only pays off if the artifact ships the integers training chose. The
later stage (quantize.int8 through `quantize_static`, quantize.int4 through
`MatMulNBitsQuantizer`) derives its weight scales from the weights it is given, so training here
derives them the same way, from the current weights, and the weights handed to export are snapped
onto that grid. Snapping is idempotent under ONNX Runtime's rules (the extreme weight of a channel
or block lands exactly on the end of the grid, so the scale it implies is the scale it came from):
the quantizer then recomputes the same scales and rounds to the same integers. The tests check
that against ONNX Runtime itself.

The rules, measured on onnxruntime 1.32's quantizers:
- static INT8 weights, symmetric: scale = max|w| / qmax with the range (qmin, qmax) ONNX Runtime
  gives the type (int8 symmetric: -127..127; 7-bit `reduce_range`: -64..64), per output channel
  or per tensor; asymmetric: the range [min(w, 0), max(w, 0)] over (qmax - qmin) steps, zero
  point rounded;
- activations: the same rules over the calibrated range of the tensor (per tensor);
- INT4 blocks along the input dimension: asymmetric as above over 0..15 (the range always holds
  0); symmetric: scale = (the block's weight of largest magnitude, with its sign) / -8, integers
  clamped to -8..7.

Why by hand: torch.ao's fake quantizers follow torch's own conventions (quant_min -128, no
signed-max INT4 rule, no block-wise groups), so their integers would not survive ONNX Runtime's
re-quantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EPS = 1e-12


@dataclass(frozen=True)
class Grid:
    """One tensor family's quantization grid."""

    qmin: int
    qmax: int
    symmetric: bool
    # weights: "channel" (one scale per output channel, axis 0 of a torch weight), "tensor", or
    # "block" (groups of `group` along the input dimension, axis 1)
    granularity: str = "tensor"
    group: int = 0
    signed_max: bool = False  # INT4 symmetric: scale from the signed largest-magnitude weight

    def describe(self) -> str:
        kind = f"block {self.group}" if self.granularity == "block" else f"per {self.granularity}"
        return f"{self.qmin}..{self.qmax} {'symmetric' if self.symmetric else 'asymmetric'}, {kind}"


def ste_round(x: Any) -> Any:
    """Round to nearest even (as ONNX Runtime rounds) forward, identity backward."""
    return x + (x.round() - x).detach()


def scale_zero(lo: Any, hi: Any, grid: Grid) -> tuple[Any, Any]:
    """Scale and zero point for ranges [lo, hi] (tensors of one shape), by ONNX Runtime's rules."""
    import torch

    if grid.signed_max:  # lo holds the signed largest-magnitude value; see the module docstring
        scale = lo / -8.0
        return torch.where(scale == 0, torch.ones_like(scale), scale), torch.zeros_like(scale)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    if grid.symmetric:
        absmax = torch.maximum(-lo, hi)
        lo, hi = -absmax, absmax
    scale = (hi - lo) / float(grid.qmax - grid.qmin)
    scale = torch.where(scale < EPS, torch.ones_like(scale), scale)
    return scale, torch.clamp(torch.round(grid.qmin - lo / scale), grid.qmin, grid.qmax)


def fake_quant(x: Any, scale: Any, zero: Any, grid: Grid) -> Any:
    """x rounded onto the grid and back, gradients straight through inside the range."""
    import torch

    q = torch.clamp(ste_round(x / scale) + zero, grid.qmin, grid.qmax)
    return (q - zero) * scale


def _blocks(w: Any, group: int) -> tuple[Any, int]:
    """[rows, cols] (or more dims, flattened) -> [rows, blocks, group], zero-padded like the
    quantizer pads a last partial block; zeros change neither the range (it holds 0) nor the
    largest magnitude."""
    import torch.nn.functional as F

    flat = w.reshape(w.shape[0], -1)
    cols = flat.shape[1]
    pad = (-cols) % group
    if pad:
        flat = F.pad(flat, (0, pad))
    return flat.reshape(flat.shape[0], -1, group), cols


def weight_grid_params(w: Any, grid: Grid) -> tuple[Any, Any]:
    """Scales and zero points of weight `w` (a torch weight: output channels first), shaped to
    broadcast against `w` (or its blocks), computed from `w` without gradient."""
    import torch

    with torch.no_grad():
        if grid.granularity == "block":
            b, _ = _blocks(w, grid.group)
            if grid.signed_max:
                idx = b.abs().argmax(-1, keepdim=True)
                return scale_zero(torch.gather(b, -1, idx), None, grid)
            return scale_zero(b.amin(-1, keepdim=True), b.amax(-1, keepdim=True), grid)
        if grid.granularity == "channel":
            flat = w.reshape(w.shape[0], -1)
            s, z = scale_zero(flat.amin(1), flat.amax(1), grid)
            shape = (-1,) + (1,) * (w.dim() - 1)
            return s.reshape(shape), z.reshape(shape)
        return scale_zero(w.amin(), w.amax(), grid)


def fake_quant_weight(w: Any, grid: Grid) -> Any:
    """`w` as the quantizer will store it, differentiable through the rounding; the scales
    follow the weights as they train (they are recomputed from the weights at export)."""
    scale, zero = weight_grid_params(w, grid)
    if grid.granularity != "block":
        return fake_quant(w, scale, zero, grid)
    b, cols = _blocks(w, grid.group)
    q = fake_quant(b, scale, zero, grid).reshape(w.shape[0], -1)[:, :cols]
    return q.reshape(w.shape)


def snap(w: Any, grid: Grid) -> Any:
    """`w` rounded onto its own grid: what export writes, so the quantizer's integers are the
    trained ones."""
    import torch

    with torch.no_grad():
        return fake_quant_weight(w, grid).detach().clone()
