"""Helpers shared by the pruning stages: a private working copy of the model, batched inputs,
per-layer widths and sparsity, and parameter / MAC counts."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from edgekit.core.patterns import matches
from edgekit.errors import DataError, RecipeError
from edgekit.stages.torch_side import prunable_layers, working_copy  # noqa: F401 (used as common.*)


def torch_inputs(feeds: dict[str, np.ndarray]) -> tuple:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())


def calibration_batches(state: Any, kind: str, samples: int, batch: int) -> Iterator[tuple[tuple, Any]]:
    """(inputs, labels or None) batches from data.calibration, the first `samples` samples."""
    import torch

    if state.calibration is None or not len(state.calibration):
        raise DataError(f"{kind}: needs data.calibration (its samples score the layers)")
    ds = state.calibration
    n = min(samples, len(ds))
    for i in range(0, n, batch):
        chunk = ds.samples[i : min(i + batch, n)]
        inputs = tuple(torch.from_numpy(np.concatenate([s[k] for s in chunk])) for k in chunk[0])
        labels = None
        if ds.labels is not None:
            labels = torch.from_numpy(np.asarray(ds.labels[i : i + len(chunk)]))
        yield inputs, labels


def task_loss(out: Any, labels: Any, reference: Any = None) -> Any:
    """The loss that gradient-based importance scores differentiate: cross-entropy on labels
    when the output is logits with labels; else cross-entropy on the reference model's own
    predictions; for other outputs the distance to the reference output, or (no reference) the
    output's mean square, a proxy."""
    import torch.nn.functional as F

    from edgekit.checks import metrics

    if out.ndim >= 2 and metrics.looks_like_logits(out.detach().numpy()):
        if labels is not None and labels.shape == out.shape[:-1]:
            return F.cross_entropy(out.flatten(0, -2), labels.flatten().long())
        if reference is not None:
            return F.cross_entropy(out.flatten(0, -2), reference.argmax(-1).flatten())
    if reference is not None:
        return F.mse_loss(out, reference)
    return out.pow(2).mean()


def select(model: Any, patterns: list[str], field: str) -> set[str]:
    """Names of the Conv/Linear layers matched by exact name or `re:` regex; a pattern that
    matches no layer is a recipe error (a typo must not silently prune everything)."""
    layers = prunable_layers(model)
    chosen: set[str] = set()
    for p in patterns:
        hit = {n for n in layers if matches(p, n)}
        if not hit:
            some = ", ".join(list(layers)[:6])
            raise RecipeError(f"{field}: {p!r} matches no Conv/Linear layer; layers are named like {some}")
        chosen |= hit
    return chosen


def layer_table(model: Any) -> dict[str, dict[str, Any]]:
    """Per Conv/Linear layer: input/output width, parameters and the share of zero weights."""
    out = {}
    for name, m in prunable_layers(model).items():
        w = m.weight.detach()
        is_conv = hasattr(m, "out_channels")
        out[name] = {
            "in": int(m.in_channels if is_conv else m.in_features),
            "out": int(m.out_channels if is_conv else m.out_features),
            "params": int(sum(p.numel() for p in m.parameters(recurse=False))),
            "sparsity": round(float((w == 0).float().mean()), 6),
        }
    return out


def count(model: Any, example: dict[str, np.ndarray]) -> dict[str, int]:
    """Parameters and multiply-accumulates of Conv and Linear layers for one example (attention
    score/value products are not counted), from forward hooks."""
    import torch

    macs = [0]

    def hook(m: Any, inp: Any, out: Any) -> None:
        if isinstance(m, torch.nn.Linear):
            macs[0] += out.numel() * m.in_features
        else:
            k = int(np.prod(m.kernel_size))
            macs[0] += out.numel() * (m.in_channels // m.groups) * k

    handles = [m.register_forward_hook(hook) for m in prunable_layers(model).values()]
    try:
        with torch.no_grad():
            model(*torch_inputs(example))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"params": int(params), "nonzero_params": int(nonzero), "macs": int(macs[0])}


def summary(before_model: Optional[Any], model: Any, example: dict[str, np.ndarray],
            before: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Params/MACs and per-layer widths before and after, with ratios after/before."""
    b = before or {"counts": count(before_model, example), "layers": layer_table(before_model)}
    a = {"counts": count(model, example), "layers": layer_table(model)}
    ratios = {k: round(a["counts"][k] / max(b["counts"][k], 1), 4) for k in b["counts"]}
    layers = {}
    for name, row in b["layers"].items():
        after = a["layers"].get(name)
        layers[name] = {"before": row, "after": after}
    return {"before": b["counts"], "after": a["counts"], "ratio_after_over_before": ratios, "layers": layers}


def snapshot(model: Any, example: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"counts": count(model, example), "layers": layer_table(model)}
