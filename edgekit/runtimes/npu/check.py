"""Offline check of an ONNX graph against an NPU profile: every node the NPU cannot run, with
why and the rewrite that would fix it (one Problem per node, the most basic reason first:
dynamic shapes, then the operator table, then quantization precision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.runtimes.npu.profiles import DYNAMIC_OPS, FIXES, Profile, get
from edgekit.runtimes.registry import Problem

QDQ = ("QuantizeLinear", "DequantizeLinear")
# tensor element types by ONNX enum
_INT_NAMES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 21: "uint4", 22: "int4"}
_FLOAT = {1, 10, 11, 16}
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _dims(vi: Any) -> list[Any]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _key(node: Any) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"


def check_model(model: Any, profile: Profile) -> list[Problem]:
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is a help here, not a requirement
        pass
    g = model.graph
    target = profile.name
    problems: list[Problem] = []
    inits = {i.name: i for i in g.initializer}
    static_inputs = True
    for vi in [*g.input, *g.output]:
        if vi.name in inits:
            continue
        dims = _dims(vi)
        dynamic = [d for d in dims if not isinstance(d, int) or d <= 0]
        if dynamic or not vi.type.tensor_type.HasField("shape"):
            kind = "input" if vi in g.input else "output"
            static_inputs = static_inputs and kind == "output"
            fix = ("pin the input shapes (rewrite fix_input_shapes; target.npu uses the recipe's inputs)"
                   if kind == "input" else "static inputs, and no data-dependent node before it (see the node lines)")
            problems.append(Problem(target, f"graph {kind} {vi.name!r} has a dynamic shape {dims or '(unknown rank)'}; "
                                    f"{target} runs static shapes only", "", "", None, fix))
    shapes = {vi.name: _dims(vi) for vi in g.value_info}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    for i in g.initializer:
        types[i.name] = i.data_type
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list[Any]] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    quantized = any(n.op_type in QDQ for n in g.node)
    if not quantized:
        problems.append(Problem(target, f"the graph is float (no QuantizeLinear/DequantizeLinear); {target} runs "
                                "integer QDQ graphs only", "", "", None,
                                "quantize it for the NPU: stage target.npu (calibrated QDQ with the profile's precisions)"))
    for pos, node in enumerate(g.node):
        why, fix = _node_problem(node, profile, shapes, types, inits, producer, readers, quantized, static_inputs)
        if why:
            problems.append(Problem(target, why, node.op_type, node.name, pos, fix))
    return problems


def _node_problem(node: Any, profile: Profile, shapes: dict[str, list[Any]], types: dict[str, int],
                  inits: dict[str, Any], producer: dict[str, Any], readers: dict[str, list[Any]],
                  quantized: bool, static_inputs: bool) -> tuple[str, str]:
    op = node.op_type
    if op in DYNAMIC_OPS:
        return (f"{DYNAMIC_OPS[op]}; {profile.name} runs static shapes only",
                "replace it with a fixed-size computation before export (e.g. a mask multiply, or TopK with a constant k)")
    if _key(node) not in profile.ops:
        return (f"{_key(node)} is not in the {profile.name} operator table",
                FIXES.get(op, "rewrite it into supported ops before target.npu, or keep it out of the exported graph"))
    for t in node.input:
        if t in inits and inits[t].data_type in _FLOAT and _has_infinity(inits[t]):
            return (f"constant {t!r} holds an infinite value: no quantization scale exists for it",
                    "replace it by a large finite value (rewrite finite_mask)")
    for out in node.output if static_inputs else ():  # else the graph input is the one problem to fix
        dims = shapes.get(out)
        if dims and any(not isinstance(d, int) for d in dims):
            return (f"output {out!r} has a dynamic shape {dims}; {profile.name} runs static shapes only",
                    "make Reshape targets constant (rewrite static_reshape) or remove the shape computation")
    if op == "Reshape" and len(node.input) > 1 and node.input[1] not in inits \
            and getattr(producer.get(node.input[1]), "op_type", "") != "Constant":
        return ("its target shape is computed at run time", "replace it by the inferred constant (rewrite static_reshape)")
    if op in QDQ:
        return _qdq_problem(node, profile, types, inits, readers)
    if quantized and op not in ("Cast",):
        for t in node.input:
            if t and types.get(t) in _FLOAT and t not in inits and \
                    getattr(producer.get(t), "op_type", "") != "DequantizeLinear":
                return (f"input {t!r} is float, not from a DequantizeLinear: {profile.name} runs integer QDQ only",
                        "give it quantized inputs and outputs (stage target.npu; onnxruntime's quantizer leaves a "
                        "node float when the nodes around it cannot be quantized)")
    return "", ""


def _has_infinity(init: Any) -> bool:
    import numpy as np
    from onnx import numpy_helper

    if np.prod(init.dims) > 4096:  # masks and fill values are small; weights are not infinite
        return False
    arr = numpy_helper.to_array(init)
    return bool((~np.isfinite(arr) | (np.abs(arr) >= 1e30)).any())


def _qdq_problem(node: Any, profile: Profile, types: dict[str, int], inits: dict[str, Any],
                 readers: dict[str, list[Any]]) -> tuple[str, str]:
    from onnx import numpy_helper

    zp = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    # the integer side: DequantizeLinear's input, QuantizeLinear's zero point (uint8 without one)
    side = node.input[0] if node.op_type == "DequantizeLinear" and node.input[0] in types else zp
    dtype = _INT_NAMES.get(types.get(side, 0), "?") if side else "uint8"
    users = readers.get(node.output[0], [])
    is_weight = any(u.op_type in WEIGHTED and list(u.input).index(node.output[0]) == 1 for u in users)
    if node.op_type == "DequantizeLinear" and node.input[0] in inits and not is_weight \
            and dtype in (*profile.activations, *profile.weights, "int32"):
        return "", ""  # a constant quantized like an activation (position table, scale), or a bias
    if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a weight
        if dtype not in profile.weights:
            return (f"weight {node.input[0]!r} is {dtype}; {profile.name} takes weights as {', '.join(profile.weights)}",
                    f"quantize weights as {profile.default_weights} (target.npu weights: {profile.default_weights})")
        scale = inits.get(node.input[1])
        if scale is not None and numpy_helper.to_array(scale).size > 1:
            bad = [u.op_type for u in users if u.op_type not in profile.per_channel_ops]
            if bad:
                return (f"per-channel weight {node.input[0]!r} feeds {bad[0]}; {profile.name} takes per-channel "
                        f"weights only on {', '.join(profile.per_channel_ops)}",
                        "quantize it per tensor (target.npu does so outside those ops)")
        return "", ""
    if dtype not in profile.activations:
        return (f"activation {node.input[0] if node.op_type == 'QuantizeLinear' else node.output[0]!r} is {dtype}; "
                f"{profile.name} takes activations as {', '.join(profile.activations)}",
                f"quantize activations as {profile.default_activations} (target.npu activations: {profile.default_activations})")
    return "", ""


def check_file(path: Path, profile: str) -> list[Problem]:
    from edgekit.core.backends import require

    onnx = require("onnx", extra="onnx")
    return check_model(onnx.load(str(path), load_external_data=False), get(profile))
