"""Already-chosen integer weights (quantize.weight_only) placed in an OpenVINO model.

NNCF would round the weights again (lm_layers says why that loses the data-aware choice), so
each matched MatMul's fp32 constant is replaced by the decompression subgraph NNCF itself writes
for int4/int8 weights -- integer constant [N, groups, group] -> Convert f16 -> (Subtract zero
point) -> Multiply f16 scale -> Reshape [N, K] -> Convert f32 -- because that is the pattern the
CPU plugin fuses into its compressed-weight FullyConnected kernel (checked in
tests/test_ov_weights.py by the op types the compiled model runs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.core.backends import require
from edgekit.errors import StageError
from edgekit.quantize.lm_layers import QLayer, RowIndex, pack_nibbles, unpack_nibbles


def _weight_rows(matmul: Any) -> Any:
    """The MatMul's constant weight as [N, K] rows, or None when it has none."""
    src = matmul.input_value(1).get_node()
    if src.get_type_name() != "Constant" or len(src.get_output_partial_shape(0)) != 2:
        return None
    w = src.get_data().astype(np.float32, copy=False)
    transpose_b = matmul.get_attributes().get("transpose_b", False)
    return w if transpose_b else w.T


def matches(model: Any, index: RowIndex) -> dict[str, list[str]]:
    """MatMul friendly name -> the layer(s) its weight holds."""
    out: dict[str, list[str]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "MatMul":
            rows = _weight_rows(op)
            names = index.match(rows) if rows is not None else None
            if names:
                out[op.get_friendly_name()] = names
    return out


def _int_constant(ov: Any, values: np.ndarray, bits: int, signed: bool) -> Any:
    kind = {(4, True): ov.Type.i4, (4, False): ov.Type.u4, (8, True): ov.Type.i8, (8, False): ov.Type.u8}[(bits, signed)]
    tensor = ov.Tensor(kind, ov.Shape(list(values.shape)))
    raw = values.astype(np.int16)
    if bits == 4:
        # OpenVINO packs the flat element sequence, two per byte (not row by row)
        tensor.data[:] = pack_nibbles((raw.reshape(-1) & 0x0F).astype(np.uint8)).view(tensor.data.dtype)
    else:
        tensor.data[:] = raw.astype(np.int8 if signed else np.uint8).view(tensor.data.dtype).reshape(tensor.data.shape)
    return ov.op.Constant(tensor)


def _decompression(ov: Any, ops: Any, q: QLayer, name: str) -> Any:
    n, k = q.ints.shape
    groups = k // q.group
    signed = q.symmetric
    values = q.ints.astype(np.int16) - (2 ** (q.bits - 1) if signed else 0)
    w = _int_constant(ov, values.reshape(n, groups, q.group), q.bits, signed)
    w.set_friendly_name(name)
    x = ops.convert(w, ov.Type.f16)
    if not signed:
        zero = _int_constant(ov, q.zeros.reshape(n, groups, 1).astype(np.int16), q.bits, False)
        x = ops.subtract(x, ops.convert(zero, ov.Type.f16))
    x = ops.multiply(x, ops.constant(q.scales.reshape(n, groups, 1).astype(np.float16), name=f"{name}/scale"))
    x = ops.reshape(x, ops.constant(np.array([n, k], dtype=np.int64)), False)
    return ops.convert(x, ov.Type.f32)


def place(model: Any, where: dict[str, list[str]], layers: dict[str, QLayer]) -> int:
    """Rewire each matched MatMul of quantized layers to read its integers; returns how many."""
    ov = require("openvino", extra="openvino")
    ops = require("openvino.opset13", extra="openvino")
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"}
    placed = 0
    for mm_name, names in where.items():
        if len(names) != 1 or names[0] not in layers:
            continue
        mm = by_name[mm_name]
        if not mm.get_attributes().get("transpose_b", False):
            raise StageError(f"{mm_name}: its weight is stored [in, out]; the int4 decompression pattern needs "
                             "[out, in] (transpose_b), which OpenVINO's PyTorch conversion writes")
        weight = _decompression(ov, ops, layers[names[0]], f"{names[0]}.weight")
        mm.input(1).replace_source_output(weight.output(0))
        placed += 1
    model.validate_nodes_and_infer_types()
    return placed


def read_back(model: Any, layers: dict[str, QLayer]) -> int:
    """Every placed layer's integer constant, as the model holds it, against the quantizer's
    integers; returns how many agreed (a mismatch raises)."""
    consts = {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}
    agreed = 0
    for name, q in layers.items():
        const = consts.get(f"{name}.weight")
        if const is None:
            continue
        raw = np.frombuffer(const.get_data(), np.uint8) if q.bits == 4 else const.get_data().reshape(-1).view(np.uint8)
        values = unpack_nibbles(raw.reshape(1, -1), q.ints.size).reshape(q.ints.shape) if q.bits == 4 \
            else raw.reshape(q.ints.shape)
        expected = q.ints - (2 ** (q.bits - 1)) if q.symmetric else q.ints
        if not np.array_equal(values.astype(np.uint8), expected.astype(np.uint8) & (0x0F if q.bits == 4 else 0xFF)):
            raise StageError(f"{name}: the integers in the OpenVINO model differ from the quantizer's")
        agreed += 1
    return agreed
