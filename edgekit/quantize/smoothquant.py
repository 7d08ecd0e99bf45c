"""SmoothQuant on the ONNX graph: move activation outliers into the weights before INT8.

onnxruntime's `extra_options={"SmoothQuant": True}` delegates to neural-compressor, which is not
a dependency of edgekit (it pulls a large tree), so the transform is written here; it is small.
For every MatMul/Gemm with a constant weight W [in, out] fed by activation X [..., in]:

    s_j = max|X_j|^alpha / max|W_j,:|^(1 - alpha)      X' = X / s      W' = diag(s) W

so X' W' == X W exactly in float. Nodes sharing one input (query/key/value) share one s (the
weight maxima are taken over all of them) and one inserted Mul. The Mul is not folded into the
producer because in BERT-style blocks that producer (LayerNorm) also feeds the residual add."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np


def _in_axis(node: Any) -> int | None:
    """Axis of the weight that runs over input channels, or None when the node cannot be smoothed."""
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type == "MatMul":
        return 0
    if node.op_type == "Gemm" and not attrs.get("transA", 0):
        return 1 if attrs.get("transB", 0) else 0
    return None


def smoothable(model: Any) -> dict[str, list[Any]]:
    """Activation tensor -> the MatMul/Gemm nodes with a constant 2-D weight that consume it."""
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[Any]] = {}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm") and _in_axis(n) is not None and n.input[1] in inits \
                and len(inits[n.input[1]].dims) == 2 and n.input[0] not in inits:
            groups.setdefault(n.input[0], []).append(n)
    return groups


def channel_absmax(model_path: Path, tensors: list[str], samples: list[dict[str, np.ndarray]],
                   threads: int = 2, tick: Callable[[int], None] = lambda n: None) -> dict[str, np.ndarray]:
    """Per-last-axis-channel max |x| of each tensor over the samples, streamed (one vector each)."""
    from edgekit.quantize.calibrate import exposing_session

    sess, inputs = exposing_session(model_path, tensors, threads)
    amax: dict[str, np.ndarray] = {}
    for s in samples:
        for t, v in zip(tensors, sess.run(tensors, {k: s[k] for k in inputs})):
            m = np.abs(v.reshape(-1, v.shape[-1])).max(axis=0)
            amax[t] = m if t not in amax else np.maximum(amax[t], m)
        tick(1)
    return amax


def smooth_scales(act_amax: np.ndarray, weight_amax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = a_j^alpha / w_j^(1-alpha); channels that never fire (or have zero weights) keep 1."""
    a = np.asarray(act_amax, np.float64)
    w = np.asarray(weight_amax, np.float64)
    ok = (a > 0) & (w > 0)
    s = np.ones_like(a)
    s[ok] = a[ok] ** alpha / w[ok] ** (1.0 - alpha)
    return np.clip(s, 1e-5, 1e5).astype(np.float32)


def apply(model_path: Path, out_path: Path, samples: list[dict[str, np.ndarray]], alpha: float,
          exclude: set[str] = frozenset(), threads: int = 2,
          tick: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Write the smoothed graph to `out_path`; return what was smoothed (for the StageRecord)."""
    import onnx
    from onnx import numpy_helper

    from edgekit.quantize.graph import Consumers

    model = onnx.load(str(model_path))
    consumers = Consumers(model)
    groups = {t: [n for n in ns if n.name not in exclude] for t, ns in smoothable(model).items()}
    groups = {t: ns for t, ns in groups.items() if ns}
    amax = channel_absmax(model_path, list(groups), samples, threads, tick)
    inits = consumers.inits
    new_nodes = []
    done = []
    for t, nodes in groups.items():
        axes = [_in_axis(n) for n in nodes]
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        if any(w.shape[ax] != amax[t].shape[0] for w, ax in zip(weights, axes)):
            continue
        w_amax = np.max([np.abs(w).max(axis=1 - ax) for w, ax in zip(weights, axes)], axis=0)
        s = smooth_scales(amax[t], w_amax, alpha)
        scaled = f"{t}_smoothed"
        inv = onnx.helper.make_tensor(f"{t}_smooth_inv", onnx.TensorProto.FLOAT, [len(s)], (1.0 / s).tolist())
        model.graph.initializer.append(inv)
        new_nodes.append((nodes[0], onnx.helper.make_node("Mul", [t, inv.name], [scaled], name=f"{t}_smooth")))
        for n, w, ax in zip(nodes, weights, axes):
            scaled_w = w * (s[:, None] if ax == 0 else s[None, :])
            # a weight another node also reads (tied, or shared across groups) is scaled in a copy
            init = consumers.private_initializer(n, 1)
            init.CopyFrom(numpy_helper.from_array(scaled_w.astype(w.dtype), init.name))
            consumers.rewire(n, 0, scaled)
        done.append({"tensor": t, "matmuls": [n.name for n in nodes],
                     "scale_min": float(s.min()), "scale_max": float(s.max())})
    # insert each Mul right before its first consumer, keeping the graph topologically sorted
    order = list(model.graph.node)
    for first, mul in new_nodes:
        order.insert(order.index(first), mul)
    del model.graph.node[:]
    model.graph.node.extend(order)
    onnx.save(model, str(out_path))
    return {"alpha": alpha, "smoothed": done, "samples": len(samples)}
