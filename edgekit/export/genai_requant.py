"""Weight-only INT4/INT8 of an ONNX Runtime GenAI folder: the model builder writes the fp32
graph, onnxruntime's own block quantizer (MatMulNBitsQuantizer, the one the builder's `default`
calls) packs it.

Why not let the builder quantize: on SmolLM2-135M (hidden size 576, nine blocks of 64 per row)
its `default` and `k_quant` fail at block 64 ("cannot reshape array of size 4320": an odd block
count per row breaks the zero-point packing of its fused q/k/v), and its `rtn` -- the one that
works there -- scales a symmetric block by 2·max|w|/15 and so clips its largest positive weights:
held-out perplexity 23.0 against 20.7 for the default quantizer at the same size (docs/llm.md
has the table and its command).

The one piece written by hand is the tied embedding: the fp32 graph reads the embedding as
Transpose(lm_head weight) -> Gather, so packing the lm_head MatMul leaves the fp32 table behind
(113 MB on SmolLM2). No quantizer shares a packed MatMul weight with a Gather, so the Gather
becomes GatherBlockQuantized over the lm_head's packed blocks, as the builder's own int4 graph
has it."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.backends import require
from edgekit.errors import StageError
from edgekit.quantize.lm_layers import QLayer, RowIndex, matmul_nbits_blob, stacked, unpack_nibbles

LM_HEAD = "/lm_head/MatMul"


def _quantize(model: Any, **kwargs: Any) -> Any:
    nb = require("onnxruntime.quantization.matmul_nbits_quantizer", extra="onnx")
    quantizer = nb.MatMulNBitsQuantizer(model, **kwargs)
    log = logging.getLogger(nb.__name__)
    level = log.level
    log.setLevel(logging.WARNING)  # it logs and prints a line per node
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantizer.process()
    finally:
        log.setLevel(level)
    return quantizer.model.model


def share_tied_embedding(model: Any, weight: str, bits: int, block: int) -> bool:
    """Point the embedding Gather that reads Transpose(`weight`) at the lm_head's packed blocks.
    Returns False where the embedding is not tied to that weight (nothing to share)."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes = list(model.graph.node)
    lm = next((n for n in nodes if n.op_type == "MatMulNBits" and n.input[1].startswith(weight)), None)
    transpose = next((n for n in nodes if n.op_type == "Transpose" and n.input[0] == weight), None)
    if lm is None or transpose is None:
        return False
    gather = next((n for n in nodes if n.op_type == "Gather" and n.input[0] == transpose.output[0]), None)
    if gather is None:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in lm.attribute}
    rows, depth = int(attrs["N"]), int(attrs["K"])
    shape = numpy_helper.from_array(np.array([rows, depth * bits // 8], dtype=np.int64), f"{weight}_table_shape")
    table = f"{weight}_table"
    reshape = helper.make_node("Reshape", [lm.input[1], shape.name], [table], name="/model/embed_tokens/Reshape")
    inputs = [table, gather.input[1], lm.input[2]] + ([lm.input[3]] if len(lm.input) > 3 and lm.input[3] else [])
    packed = helper.make_node("GatherBlockQuantized", inputs, list(gather.output),
                              name="/model/embed_tokens/GatherBlockQuantized", domain="com.microsoft",
                              bits=bits, block_size=block, gather_axis=0, quantize_axis=1)
    at = nodes.index(gather)
    del model.graph.node[:]
    model.graph.node.extend([n for n in nodes[:at] if n is not transpose] + [reshape, packed]
                            + [n for n in nodes[at + 1:] if n is not transpose])
    model.graph.initializer.append(shape)
    # the fp32 table is gone once nothing reads it
    still_read = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name != weight or weight in still_read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return True


def place_layers(model: Any, index: RowIndex, layers: dict[str, QLayer], accuracy_level: int) -> dict[str, Any]:
    """Replace every MatMul whose constant weight is made of quantized layers' dequantized rows
    by a MatMulNBits holding those layers' own integers; MatMuls of float-kept layers stay.
    Returns which node got which layers."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    placed: dict[str, list[str]] = {}
    kept: list[str] = []
    nodes = []
    dropped: set[str] = set()
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        names = index.match(numpy_helper.to_array(weight).T) if weight is not None and len(weight.dims) == 2 else None
        if not names or not all(n in index.quantized for n in names):
            if names:
                kept.append(node.name)
            nodes.append(node)
            continue
        q = stacked([layers[n] for n in names], names)
        blob, scales, zeros = matmul_nbits_blob(q)
        base = node.input[1]
        tensors = [numpy_helper.from_array(blob, f"{base}_Q{q.bits}"), numpy_helper.from_array(scales, f"{base}_scales")]
        if zeros is not None:
            tensors.append(numpy_helper.from_array(zeros, f"{base}_zero_points"))
        model.graph.initializer.extend(tensors)
        dropped.add(base)
        nodes.append(helper.make_node("MatMulNBits", [node.input[0]] + [t.name for t in tensors], list(node.output),
                                      name=node.name.replace("MatMul", "MatMulNBits"), domain="com.microsoft",
                                      K=int(q.ints.shape[1]), N=int(q.ints.shape[0]), bits=q.bits,
                                      block_size=q.group, accuracy_level=accuracy_level))
        placed[node.name] = names
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    still_read = {i for n in model.graph.node for i in n.input}
    kept_inits = [t for t in model.graph.initializer if t.name not in dropped or t.name in still_read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_inits)
    missing = sorted(set(layers) - {n for names in placed.values() for n in names})
    if missing:
        raise StageError(f"the builder's graph has no weight equal to quantized layer {missing[0]} "
                         f"({len(missing)} of {len(layers)} missing): it changed the weights on export")
    return {"placed": placed, "float_kept": kept}


def read_back(model: Any, placed: dict[str, list[str]], layers: dict[str, QLayer]) -> int:
    """The integers of each placed node, unpacked from the model as it will be saved, against
    the quantizer's: the check that no tool re-rounded them. Returns how many layers agreed."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    by_name = {n.name.replace("MatMulNBits", "MatMul"): n for n in model.graph.node if n.op_type == "MatMulNBits"}
    agreed = 0
    for node_name, names in placed.items():
        node = by_name[node_name]
        q = stacked([layers[n] for n in names], names)
        blob = numpy_helper.to_array(inits[node.input[1]])
        ints = unpack_nibbles(blob, q.group) if q.bits == 4 else blob
        if not np.array_equal(ints.reshape(q.ints.shape), q.ints):
            raise StageError(f"{node.name}: the integers stored differ from the quantizer's for {', '.join(names)}")
        agreed += len(names)
    return agreed


def requantize(src: Path, out: Path, bits: int, block: int, symmetric: bool, lm_head_bits: int,
               accuracy_level: int, fixed: Optional[Any] = None) -> dict[str, Any]:
    """The fp32 folder `src` to a `bits` folder `out` (model.onnx + model.onnx.data): onnxruntime's
    default block quantizer on every MatMul but the lm_head, which is packed symmetric at
    `lm_head_bits` so that the embedding can read the same blocks (a shared table with zero
    points would need the Gather and the MatMul to agree on their packing). With `fixed` (the
    result of quantize.weight_only) its layers keep their own integers, the ones it left float
    stay float, and only the lm_head goes through onnxruntime's quantizer."""
    onnx = require("onnx", extra="onnx")
    nb = require("onnxruntime.quantization.matmul_nbits_quantizer", extra="onnx")
    model = onnx.load(str(src / "model.onnx"))
    lm = [n for n in model.graph.node if n.op_type == "MatMul" and n.name == LM_HEAD]
    weight = lm[0].input[1] if lm else None
    def config(b: int, sym: bool) -> Any:
        return nb.DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=sym, accuracy_level=accuracy_level,
                                               bits=b)

    info: dict[str, Any] = {}
    if fixed is not None:
        where = place_layers(model, RowIndex(fixed.layers, fixed.floats), fixed.layers, accuracy_level)
        info = {"weights_from": fixed.tool, "placed_nodes": len(where["placed"]),
                "integers_read_back_equal": read_back(model, where["placed"], fixed.layers),
                "float_kept_nodes": where["float_kept"]}
    else:
        model = _quantize(model, bits=bits, block_size=block, is_symmetric=symmetric, accuracy_level=accuracy_level,
                          nodes_to_exclude=[LM_HEAD], algo_config=config(bits, symmetric))
    tied = False
    if weight is not None:
        model = _quantize(model, bits=lm_head_bits, block_size=block, is_symmetric=True,
                          accuracy_level=accuracy_level, nodes_to_include=[LM_HEAD],
                          nodes_to_exclude=info.get("float_kept_nodes", []),  # it reads include as a hint only
                          algo_config=config(lm_head_bits, True))
        tied = share_tied_embedding(model, weight, lm_head_bits, block)
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    constants = {t.name for t in model.graph.initializer}
    left = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants
            and n.name not in info.get("float_kept_nodes", [])]
    if left:
        raise StageError(f"onnxruntime's block quantizer left {len(left)} MatMul node(s) unpacked ({', '.join(left[:3])}): their weights are "
                         f"not constant 2-D initializers with an input dimension divisible by block_size {block}")
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data")
    return {"quantizer": "onnxruntime MatMulNBitsQuantizer (default)", "lm_head_bits": lm_head_bits if weight else None,
            "embedding": "shares the lm_head's packed blocks" if tied else "as the builder wrote it", **info}
