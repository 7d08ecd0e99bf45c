"""Integer weights of a language model's linear layers, as a weight-only quantizer left them,
and the two ways a runtime graph stores them.

`quantize.weight_only` (Intel Neural Compressor on the torch model) hands the generation targets
these integers; each target places them in its own graph instead of re-quantizing a float copy.
Why by hand: neither runtime has a tool that takes already-chosen integers. ONNX Runtime's
block quantizer and NNCF both round the float weights again, and rounding a dequantized weight
does not give the same integers back where the data-aware scale is not max|w| / qmax (GPTQ,
AWQ, clipped scales). So the packing below follows each format's definition (MatMulNBits'
blocks, OpenVINO's int4 decompression subgraph), and the targets read the stored bytes back to
check that every integer arrived as it was.

Which graph weight holds which layer is found by value, not by name: the builders name and fuse
layers their own way (ONNX Runtime GenAI's builder concatenates q/k/v into one qkv_proj), and
both keep the dequantized fp32 values of the directory they were given exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgekit.errors import StageError


@dataclass(frozen=True)
class QLayer:
    """One linear layer [out, in]: unsigned integers (a symmetric layer's zero point is
    2**(bits-1)), fp16 scales and zero points per (output row, group of `group` inputs)."""

    ints: np.ndarray  # uint8 [out, in]
    scales: np.ndarray  # float16 [out, groups]
    zeros: np.ndarray  # uint8 [out, groups]
    bits: int
    group: int

    @property
    def symmetric(self) -> bool:
        return bool(np.all(self.zeros == 2 ** (self.bits - 1)))

    def dequantized(self) -> np.ndarray:
        """(q - zero) * scale in fp32: what the float graph holds and each runtime computes."""
        q = self.ints.astype(np.float32) - np.repeat(self.zeros.astype(np.float32), self.group, axis=1)
        return q * np.repeat(self.scales.astype(np.float32), self.group, axis=1)


@dataclass
class QuantizedLM:
    """What quantize.weight_only leaves for the generation targets: the directory they build
    from (the dequantized weights), the integers of every quantized layer, and the fp32 weights
    of the layers an override kept float (so a target can tell them from the lm_head)."""

    directory: Path
    layers: dict[str, QLayer]
    floats: dict[str, np.ndarray]
    tool: str  # e.g. "neural-compressor 3.10 gptq"

    @property
    def precision(self) -> str:
        """The artifact's precision label: one bit width for every quantized layer, or mixed."""
        widths = {q.bits for q in self.layers.values()}
        return f"int{widths.pop()}" if len(widths) == 1 and not self.floats else "mixed"


def _key(row: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(row, dtype=np.float32).tobytes()).digest()


class RowIndex:
    """Finds the layers whose dequantized rows, stacked, make up a graph's weight matrix."""

    def __init__(self, layers: dict[str, QLayer], floats: Optional[dict[str, np.ndarray]] = None) -> None:
        self.weights = {name: q.dequantized() for name, q in layers.items()}
        self.weights.update(floats or {})
        self.quantized = set(layers)
        self._first = {}
        for name, w in self.weights.items():
            self._first.setdefault(_key(w[0]), []).append(name)

    def match(self, rows: np.ndarray) -> Optional[list[str]]:
        """The layers, in order, whose rows are exactly `rows` [N, K]; None when the first row
        belongs to no layer (a weight the quantizer did not touch, such as the lm_head)."""
        names: list[str] = []
        at = 0
        while at < rows.shape[0]:
            found = [n for n in self._first.get(_key(rows[at]), []) if n not in names
                     and self.weights[n].shape[1] == rows.shape[1]
                     and np.array_equal(self.weights[n], rows[at:at + self.weights[n].shape[0]])]
            if not found:
                if not names:
                    return None
                raise StageError(f"a graph weight of {rows.shape[0]} rows starts with layer {names[0]} but its rows "
                                 f"from {at} on match no quantized layer; the exporter changed the weights")
            names.append(found[0])
            at += self.weights[found[0]].shape[0]
        return names


def stacked(layers: list[QLayer], names: list[str]) -> QLayer:
    """Layers concatenated along their outputs (a fused projection); they must agree on bits and
    group, since one packed node has one of each."""
    first = layers[0]
    for name, q in zip(names, layers):
        if (q.bits, q.group) != (first.bits, first.group):
            raise StageError(f"{', '.join(names)} are fused into one graph weight, so they need one bit width and "
                             f"group size; {names[0]} has {first.bits} bits / group {first.group}, {name} has "
                             f"{q.bits} / {q.group}: give them the same override")
    return QLayer(np.concatenate([q.ints for q in layers]), np.concatenate([q.scales for q in layers]),
                  np.concatenate([q.zeros for q in layers]), first.bits, first.group)


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """uint8 values < 16, two per byte along the last axis, the first in the low nibble: the
    order of both MatMulNBits' blobs and OpenVINO's u4/i4 constants."""
    v = values.astype(np.uint8)
    if v.shape[-1] % 2:
        v = np.concatenate([v, np.zeros(v.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    out = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[:-1] + (-1,))
    return out[..., :count].astype(np.uint8)


def matmul_nbits_blob(q: QLayer) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """MatMulNBits' B [N, blocks, bytes per block], scales [N, blocks] and packed zero points
    (None for a symmetric layer: the operator's default zero point is 2**(bits-1))."""
    n, k = q.ints.shape
    blocks = k // q.group
    grouped = q.ints.reshape(n, blocks, q.group)
    blob = pack_nibbles(grouped) if q.bits == 4 else grouped.astype(np.uint8)
    zeros = None
    if not q.symmetric:
        zeros = pack_nibbles(q.zeros) if q.bits == 4 else q.zeros.astype(np.uint8)
    return blob, q.scales.astype(np.float32), zeros
