"""The TensorRT lint: what the ONNX parser and the builder will refuse or run slowly, found on the
ONNX file alone, with no GPU and no tensorrt package, so a laptop or CI knows before the engine
build on the target. Written by hand because no library checks these rules offline (polygraphy's
lint runs the model node by node with ONNX Runtime and knows nothing of Q/DQ placement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.backends import require
from edgekit.runtimes.registry import Problem

TARGET = "tensorrt"

# Snapshot of the ONNX-TensorRT operator support matrix (onnx/onnx-tensorrt docs/operators.md at
# the "ONNX-TensorRT 10.1 GA" release): the operators it marks unsupported, and the opset range
# it parses. Operators of other domains (com.microsoft, ...) need a TensorRT plugin.
SNAPSHOT = "onnx-tensorrt 10.1 GA docs/operators.md"
OPSETS = (9, 20)
UNSUPPORTED = frozenset("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Col2Im CenterCropPad
Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear HammingWindow HannWindow ImageDecoder
MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch STFT SequenceAt SequenceConstruct
SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
""".split())
# ops that TensorRT runs in INT8 when their data and weight inputs both come from DequantizeLinear
QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
Q_TYPES = {3: "int8", 2: "uint8", 22: "int4", 21: "uint4", 17: "float8e4m3fn"}  # TensorProto element types


def _fix_for(op: str) -> str:
    return {
        "DynamicQuantizeLinear": "use static INT8 (quantize.int8, format qdq) instead of quantize.dynamic",
        "MatMulInteger": "use static INT8 QDQ (quantize.int8) instead of quantize.dynamic",
        "ConvInteger": "use static INT8 QDQ (quantize.int8) instead of QOperator/dynamic",
        "QLinearConv": "quantize with format: qdq (explicit Q/DQ), not qoperator",
        "QLinearMatMul": "quantize with format: qdq (explicit Q/DQ), not qoperator",
    }.get(op, "replace it with supported ops before export or provide a TensorRT plugin")


def lint(path: Path) -> list[Problem]:
    onnx = require("onnx", extra="onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    problems: list[Problem] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not OPSETS[0] <= opset <= OPSETS[1]:
        problems.append(Problem(TARGET, f"opset {opset} is outside {OPSETS[0]}-{OPSETS[1]} ({SNAPSHOT}); newer TensorRT "
                                "releases may parse it", fix="export with an opset in that range", severity="warning"))
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    producer = {o: n for n in graph.node for o in n.output}

    def zero_point(node: Any) -> Any:
        if len(node.input) < 3 or not node.input[2]:
            return None
        name = node.input[2]
        if name in inits:
            return inits[name]
        if name in consts:
            return next((a.t for a in consts[name].attribute if a.name == "value"), None)
        return None

    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    for i, n in enumerate(graph.node):
        if n.domain not in ("", "ai.onnx"):
            problems.append(Problem(TARGET, f"{n.domain}::{n.op_type} is not an ONNX operator; the parser needs a "
                                    "plugin for it", n.op_type, n.name, i, _fix_for(n.op_type)))
            continue
        if n.op_type in UNSUPPORTED:
            problems.append(Problem(TARGET, f"{n.op_type} is not supported by the ONNX parser ({SNAPSHOT})",
                                    n.op_type, n.name, i, _fix_for(n.op_type)))
            continue
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = zero_point(n)
            if zp is not None:
                kind = Q_TYPES.get(zp.data_type, str(zp.data_type))
                values = numpy_helper.to_array(zp)
                if kind == "uint8":
                    problems.append(Problem(TARGET, "uint8 Q/DQ: TensorRT quantizes to signed int8 only (uint8 is for "
                                            "network inputs/outputs)", n.op_type, n.name, i,
                                            "quantize activations as int8, symmetric (activations: {dtype: int8, "
                                            "symmetric: true})"))
                elif kind in ("int8", "int4") and np.any(values != 0):
                    bad = int(np.flatnonzero(values.reshape(-1) != 0)[0])
                    problems.append(Problem(TARGET, f"{kind} zero point must be 0 (element {bad} is "
                                            f"{int(values.reshape(-1)[bad])}); the parser rejects asymmetric Q/DQ",
                                            n.op_type, n.name, i, "quantize symmetrically (symmetric: true)"))
        if has_qdq and n.op_type in QUANTIZABLE and len(n.input) >= 2:
            fed = [producer.get(x) is not None and producer[x].op_type == "DequantizeLinear" for x in n.input[:2]]
            if fed.count(True) == 1:
                which = "data" if not fed[0] else "weight"
                problems.append(Problem(TARGET, f"only one input is quantized (its {which} input is float): TensorRT "
                                        "runs it in float with extra reformatting", n.op_type, n.name, i,
                                        f"put a QuantizeLinear/DequantizeLinear pair on its {which} input too",
                                        severity="warning"))
        if has_qdq and n.op_type == "Add" and len(n.input) == 2 and not any(x in inits or x in consts for x in n.input):
            fed = [producer.get(x) is not None and producer[x].op_type == "DequantizeLinear" for x in n.input]
            if fed.count(True) == 1:
                problems.append(Problem(TARGET, "residual Add with one quantized input: TensorRT fuses it into the "
                                        "preceding Conv in INT8 only when both inputs come from DequantizeLinear",
                                        n.op_type, n.name, i, "quantize both inputs of the Add (add Add to op_types)",
                                        severity="warning"))
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
