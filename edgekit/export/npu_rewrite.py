"""Graph rewrites that make common exported models acceptable to an NPU backend.

Library first: onnxruntime's `qnn_preprocess_model` fuses Erf chains into Gelu, ReduceMean
chains into LayerNormalization, ReduceL2 chains into LpNormalization and Reshape/Transpose
chains into SpaceToDepth, and `onnx_model_utils.make_input_shape_fixed` pins dynamic input
dimensions. What no library does is written here, each as one small function over a ModelProto
that returns how many places it changed:

- `finite_mask`: attention masks built as Where(mask, 0, -inf). An infinite activation has no
  quantization scale (onnxruntime computes a NaN zero point) and the HTP refuses the Quantize
  node; a finite large negative value gives the same softmax to float precision.
- `nan_guard`: Where(IsNaN(softmax), 0, softmax), the guard PyTorch's SDPA export puts after a
  softmax over a fully masked row. With a finite mask the softmax is never NaN, and neither IsNaN
  nor a boolean Where runs on the HTP.
- `static_reshape`: Reshape whose shape is computed at run time (Shape -> Gather -> Concat)
  gets the shape shape inference found, as a constant.
- `gemm_to_matmul`: Gemm back to MatMul (+ Add), for profiles whose backend refuses Gemm with
  the quantized types it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

# a masked attention logit: softmax weight exp(-100) ~ 4e-44 next to an unmasked logit near 0,
# zero in float32 as exp(-inf) is; and small enough that the 16-bit scale of the masked scores
# (range ~[-110, 10]) keeps a step of ~0.002 for the unmasked ones. Stage setting `mask_value`.
MASK_VALUE = -100.0
HUGE = 1.0e30  # constants beyond this are treated as infinite (float32 min used as a mask)


@dataclass
class Applied:
    """What the rewrites did: per rewrite, how many places changed."""

    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, n: int) -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + n


def _initializers(model: Any) -> dict[str, Any]:
    return {i.name: i for i in model.graph.initializer}


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _readers(model: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _constant_value(model: Any, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    inits = _initializers(model)
    if name in inits:
        return numpy_helper.to_array(inits[name])
    prod = _producers(model).get(name)
    if prod is not None and prod.op_type == "Constant":
        for a in prod.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def finite_mask(model: Any, value: float = MASK_VALUE) -> int:
    """Replace infinite (or float32-min-sized) constants read by Where/Add/Sub/Mul with +-`value`."""
    from onnx import numpy_helper

    inits = _initializers(model)
    readers = _readers(model)
    changed = 0
    for name, init in list(inits.items()):
        if init.data_type not in (1, 10, 11):  # float, float16, double
            continue
        arr = numpy_helper.to_array(init)
        big = ~np.isfinite(arr) | (np.abs(arr) >= HUGE)
        if not big.any() or not readers.get(name):
            continue
        if not all(r.op_type in ("Where", "Add", "Sub", "Mul", "Max", "Min") for r in readers[name]):
            continue
        fixed = np.where(big, np.sign(np.nan_to_num(arr, posinf=1.0, neginf=-1.0)) * abs(value), arr).astype(arr.dtype)
        init.CopyFrom(numpy_helper.from_array(fixed, name))
        changed += 1
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for a in node.attribute:
            if a.name == "value" and a.t.data_type in (1, 10, 11):
                arr = numpy_helper.to_array(a.t)
                big = ~np.isfinite(arr) | (np.abs(arr) >= HUGE)
                if big.any():
                    fixed = np.where(big, np.sign(np.nan_to_num(arr, posinf=1.0, neginf=-1.0)) * abs(value), arr)
                    a.t.CopyFrom(numpy_helper.from_array(fixed.astype(arr.dtype), a.t.name))
                    changed += 1
    return changed


def nan_guard(model: Any) -> int:
    """Where(IsNaN(s), c, s) -> s where `s` is a Softmax output: a softmax of finite logits is
    never NaN (run after `finite_mask`, which makes the logits finite)."""
    producers = _producers(model)
    readers = _readers(model)
    graph_outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    rename: dict[str, str] = {}
    for where in model.graph.node:
        if where.op_type != "Where" or len(where.input) != 3:
            continue
        cond, _, x = where.input
        isnan = producers.get(cond)
        soft = producers.get(x)
        if isnan is None or isnan.op_type != "IsNaN" or isnan.input[0] != x or soft is None or soft.op_type != "Softmax":
            continue
        if where.output[0] in graph_outputs:
            continue
        rename[where.output[0]] = x
        drop.add(id(where))
        if all(id(r) == id(where) for r in readers.get(cond, [])):
            drop.add(id(isnan))
    if not rename:
        return 0
    kept = [n for n in model.graph.node if id(n) not in drop]
    for n in kept:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(rename)


def static_reshape(model: Any) -> int:
    """A Reshape whose shape input is computed gets the static shape shape inference found."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # data_prop: through Shape/Gather/Concat
    shapes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    inits = _initializers(model)
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in inits:
            continue
        if _constant_value(model, node.input[1]) is not None:
            continue
        shape = shapes.get(node.output[0])
        if shape is None:
            continue
        name = f"{node.name or node.output[0]}_static_shape"
        model.graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), name))
        node.input[1] = name
        changed += 1
    if changed:
        drop_dead_nodes(model)  # the Shape/Gather/Concat chains that computed the targets
    return changed


def drop_dead_nodes(model: Any) -> int:
    """Remove nodes whose outputs nothing reads (neither a node nor a graph output), repeatedly,
    so that a rewrite leaves no orphan chain for the profile check to flag."""
    from edgekit.quantize.graph import Consumers  # reads through If/Loop subgraphs too

    outputs = {o.name for o in model.graph.output}
    removed = 0
    while True:
        read = set(Consumers(model).readers) | outputs
        kept = [n for n in model.graph.node if any(o in read for o in n.output)]
        if len(kept) == len(model.graph.node):
            return removed
        removed += len(model.graph.node) - len(kept)
        del model.graph.node[:]
        model.graph.node.extend(kept)


def gemm_to_matmul(model: Any) -> int:
    """Gemm(A, B, C) with alpha = beta = 1 and transA = 0 -> MatMul(A, B or B^T) (+ Add C).
    A transposed weight initializer is stored transposed, so no Transpose node is added."""
    from onnx import helper, numpy_helper

    inits = _initializers(model)
    readers = _readers(model)
    out_nodes = []
    changed = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 \
                or attrs.get("beta", 1.0) != 1.0 or node.input[1] not in inits:
            out_nodes.append(node)
            continue
        w = node.input[1]
        if attrs.get("transB", 0):
            if len(readers.get(w, [])) > 1:  # a shared weight keeps its layout for the other readers
                out_nodes.append(node)
                continue
            arr = numpy_helper.to_array(inits[w]).T.copy()
            inits[w].CopyFrom(numpy_helper.from_array(arr, w))
        base = node.name or node.output[0]
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{base}_matmul_out" if has_bias else node.output[0]
        out_nodes.append(helper.make_node("MatMul", [node.input[0], w], [mm_out], name=f"{base}_matmul"))
        if has_bias:
            out_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{base}_bias"))
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(out_nodes)
    return changed


def fix_input_shapes(model: Any, shapes: dict[str, list[int]]) -> int:
    """Pin every dynamic graph input dimension to the recipe's example shape (onnxruntime's own
    helper), and the outputs' shapes with it."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    changed = 0
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes and any(not d.HasField("dim_value") for d in dims):
            make_input_shape_fixed(model.graph, inp.name, list(shapes[inp.name]))
            changed += 1
    if changed:
        fix_output_shapes(model)
    return changed


# hand-written rewrites, in the order they run; each is named in the stage record
HAND_WRITTEN: dict[str, Callable[[Any], int]] = {
    "finite_mask": finite_mask,
    "nan_guard": nan_guard,
    "static_reshape": static_reshape,
    "gemm_to_matmul": gemm_to_matmul,
}


def library_preprocess(src: Path, dst: Path) -> dict[str, int]:
    """onnxruntime's QNN pre-processing (Gelu, LayerNormalization, LpNormalization and
    SpaceToDepth fusions); returns the op-type count changes it made."""
    import onnx
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    before = _op_counts(onnx.load(str(src), load_external_data=False))
    if not qnn_preprocess_model(str(src), str(dst), fuse_layernorm=True):
        import shutil

        shutil.copyfile(src, dst)
        return {}
    after = _op_counts(onnx.load(str(dst), load_external_data=False))
    fused = {op: after[op] - before.get(op, 0) for op in ("Gelu", "LayerNormalization", "LpNormalization", "SpaceToDepth")
             if after.get(op, 0) > before.get(op, 0)}
    return fused


def _op_counts(model: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def rewrite(src: Path, dst: Path, input_shapes: dict[str, list[int]], enabled: list[str],
            mask_value: float = MASK_VALUE) -> Applied:
    """Everything the NPU graph needs before quantization: pinned input shapes, the library's
    fusions, then the hand-written rewrites named in `enabled` (in HAND_WRITTEN's order)."""
    import onnx

    applied = Applied()
    model = onnx.load(str(src))
    applied.add("fix_input_shapes", fix_input_shapes(model, input_shapes))
    for name, fn in HAND_WRITTEN.items():
        if name in enabled and name != "gemm_to_matmul":
            applied.add(name, finite_mask(model, mask_value) if name == "finite_mask" else fn(model))
    staged = dst.with_suffix(".stage.onnx")
    onnx.save(model, str(staged))
    for op, n in library_preprocess(staged, dst).items():
        applied.add(f"fuse_{op}", n)
    staged.unlink()
    if "gemm_to_matmul" in enabled:
        model = onnx.load(str(dst))
        n = gemm_to_matmul(model)
        if n:
            onnx.save(model, str(dst))
        applied.add("gemm_to_matmul", n)
    return applied
