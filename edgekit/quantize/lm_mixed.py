"""Mixed precision for a causal LM's linear layers under a byte budget: how much each layer
hurts when it alone is quantized (the scan), and which bits / group each layer gets so that the
sum of those harms is least within the budget (the chooser).

Why by hand: Intel Neural Compressor 3.10 quantizes with the bits it is given and has no
per-layer search for weight-only LMs, and NNCF's `ratio` ranks layers for one choice only (INT4
or its INT8 backup) by a proxy of its own and cannot trade group sizes against bit widths or
hold a byte budget. The cost is small: the scan reruns only the blocks from the changed layer
on, from cached block inputs.

The harm of a layer is the KL divergence per token of the model's next-token distribution from
the float model's, on a few calibration windows, with only that layer (or its fused group, see
`units`) rounded to nearest at the candidate's bits and group. Harms are taken to add up, which
holds while each is small; the targets' perplexity and KL verification checks the mix end to
end."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from edgekit.core.cache import cache_dir
from edgekit.errors import RecipeError, StageError
from edgekit.runtimes import genai, ov_genai

# bytes a scale takes in each target's graph: ONNX Runtime GenAI's fp32 CPU graph keeps MatMulNBits
# scales in fp32, OpenVINO's decompression subgraph in f16. The chooser holds the budget on both.
SCALE_BYTES = {genai.NAME: 4, ov_genai.NAME: 2}
FUSED = ("q_proj", "k_proj", "v_proj")
SCAN_FORMAT = 1  # bump when what a stored scan holds, or how it is computed, changes  # one MatMul in ONNX Runtime GenAI's builder: one choice


@dataclass(frozen=True)
class Choice:
    bits: int  # 4, 8; 16 keeps the layer float
    group: int

    @property
    def key(self) -> str:
        return "float" if self.bits == 16 else f"int{self.bits}/g{self.group}"


def layer_bytes(rows: int, cols: int, c: Choice, symmetric: bool, scale_bytes: int) -> float:
    """A linear layer's stored size at one choice: packed integers, a scale per group and, for an
    asymmetric layer, a zero point of the same bits per group. A float layer is fp32 (ORT's CPU
    graph) or what the scale width says (its fp32 weight in both targets' graphs)."""
    if c.bits == 16:
        return rows * cols * 4.0
    groups = rows * (cols // c.group)
    return rows * cols * c.bits / 8 + groups * scale_bytes + (0 if symmetric else groups * c.bits / 8)


def units(names: Sequence[str]) -> list[list[str]]:
    """Layers that must share one choice: the q/k/v projections of a block, which the builder
    fuses into one weight; every other layer alone. In the order the layers come."""
    out: list[list[str]] = []
    fused: dict[str, list[str]] = {}
    for n in names:
        parent, _, leaf = n.rpartition(".")
        if leaf in FUSED:
            if parent not in fused:
                fused[parent] = []
                out.append(fused[parent])
            fused[parent].append(n)
        else:
            out.append([n])
    return out


@dataclass(frozen=True)
class Option:
    choice: Choice
    loss: float
    cost: tuple[float, ...]  # bytes in each cost model


def _total(options: Sequence[Sequence[Option]], pick: Sequence[int], dims: int) -> list[float]:
    return [sum(options[u][i].cost[k] for u, i in enumerate(pick)) for k in range(dims)]


EXHAUSTIVE = 4096  # assignments: below this many, a start that fits is searched for exhaustively


def _starts(options: Sequence[Sequence[Option]], budget: Sequence[float]) -> list[list[int]]:
    """Candidate starting assignments: each unit's cheapest option under several weightings of
    the cost models (the largest budget fraction, each model alone, their sum). With more than
    one cost model no single weighting is sure to find an assignment that fits when one exists."""
    dims = len(budget)
    weightings: list[Any] = [lambda c: max(x / b for x, b in zip(c, budget)),
                             lambda c: sum(x / b for x, b in zip(c, budget))]
    weightings += [lambda c, k=k: c[k] / budget[k] for k in range(dims)] if dims > 1 else []
    out = []
    for w in weightings:
        out.append([min(range(len(opts)), key=lambda i: (w(opts[i].cost), max(
            x / b for x, b in zip(opts[i].cost, budget)), opts[i].loss)) for opts in options])
    return out


def _overflow(total: Sequence[float], budget: Sequence[float]) -> float:
    return sum(max(0.0, t - b * (1 + 1e-12)) / b for t, b in zip(total, budget))


def _repair(options: Sequence[Sequence[Option]], pick: list[int], budget: Sequence[float]) -> Optional[list[int]]:
    """From `pick`, the single swaps that most reduce the overflow over the budget, until it fits;
    exhaustively for small problems when the swaps stall."""
    dims = len(budget)
    pick = list(pick)
    total = _total(options, pick, dims)
    while _overflow(total, budget) > 0:
        best: Optional[tuple[float, int, int]] = None
        for u, opts in enumerate(options):
            for i, o in enumerate(opts):
                t = [a + c - d for a, c, d in zip(total, o.cost, opts[pick[u]].cost)]
                over = _overflow(t, budget)
                if over < _overflow(total, budget) and (best is None or over < best[0]):
                    best = (over, u, i)
        if best is None:
            break
        _, u, i = best
        total = [a + c - d for a, c, d in zip(total, options[u][i].cost, options[u][pick[u]].cost)]
        pick[u] = i
    if _overflow(total, budget) == 0:
        return pick
    if math.prod(len(o) for o in options) <= EXHAUSTIVE:
        fits = [list(p) for p in itertools.product(*[range(len(o)) for o in options])
                if _overflow(_total(options, p, dims), budget) == 0]
        if fits:
            return min(fits, key=lambda p: sum(options[u][i].loss for u, i in enumerate(p)))
    return None


def choose(options: Sequence[Sequence[Option]], budget: Sequence[float]) -> Optional[list[int]]:
    """One option index per unit whose costs stay within `budget` in every cost model, with the
    least total loss found; None when no assignment fits (sure below EXHAUSTIVE assignments;
    above, when neither the weighted starts nor the repair swaps find one).

    A multiple-choice knapsack. From an assignment that fits, greedy on the best loss saved per
    budget fraction spent (the largest fraction over the cost models), which is optimal on the
    convex hull of each unit's options and near it otherwise; a uniform assignment that fits
    and loses less is taken instead, so the mix is never worse, by the scan's measure, than any
    uniform choice it could have made."""
    dims = len(budget)
    starts = _starts(options, budget)
    fitting = [p for p in starts if _overflow(_total(options, p, dims), budget) == 0]
    if not fitting:
        repaired = _repair(options, min(starts, key=lambda p: _overflow(_total(options, p, dims), budget)), budget)
        if repaired is None:
            return None
        fitting = [repaired]
    results = [_improve(options, p, budget) for p in fitting]
    pick = min(results, key=lambda p: sum(options[u][i].loss for u, i in enumerate(p)))
    loss = sum(options[u][i].loss for u, i in enumerate(pick))
    for c in {o.choice for opts in options if len(opts) > 1 for o in opts}:
        # a unit with one option (an override holds it) keeps it in a uniform assignment too
        if not all(len(opts) == 1 or any(o.choice == c for o in opts) for opts in options):
            continue
        uniform = [0 if len(opts) == 1 else next(i for i, o in enumerate(opts) if o.choice == c) for opts in options]
        t = _total(options, uniform, dims)
        got = sum(options[u][i].loss for u, i in enumerate(uniform))
        if all(a <= b * (1 + 1e-12) for a, b in zip(t, budget)) and got < loss:
            pick, loss = uniform, got
    return pick


def _improve(options: Sequence[Sequence[Option]], pick: list[int], budget: Sequence[float]) -> list[int]:
    """The greedy: the swap saving the most loss per budget fraction spent, while it fits."""
    pick = list(pick)
    total = _total(options, pick, len(budget))
    while True:
        best: Optional[tuple[float, float, int, int]] = None
        for u, opts in enumerate(options):
            cur = opts[pick[u]]
            for i, o in enumerate(opts):
                saved = cur.loss - o.loss
                if saved <= 0:
                    continue
                delta = [a - b for a, b in zip(o.cost, cur.cost)]
                if any(t + d > b * (1 + 1e-12) for t, d, b in zip(total, delta, budget)):
                    continue
                spent = max(d / b for d, b in zip(delta, budget))
                ratio = math.inf if spent <= 0 else saved / spent
                if best is None or (ratio, saved) > best[:2]:
                    best = (ratio, saved, u, i)
        if best is None:
            return pick
        _, _, u, i = best
        total = [t + a - b for t, a, b in zip(total, options[u][i].cost, options[u][pick[u]].cost)]
        pick[u] = i


def frontier(options: Sequence[Sequence[Option]], budget: Sequence[float],
             scales: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.35, 1.5)) -> list[dict[str, Any]]:
    """Predicted loss of the chosen mix at budgets around the given one: what a few more or fewer
    megabytes buy, for the record."""
    out = []
    for s in scales:
        b = [x * s for x in budget]
        pick = choose(options, b)
        if pick is None:
            continue
        out.append({"budget_scale": s, "mb": [round(t / 1e6, 3) for t in _total(options, pick, len(budget))],
                    "predicted_kl": float(sum(options[u][i].loss for u, i in enumerate(pick)))})
    return out


def fake_quantize(w: Any, c: Choice, symmetric: bool) -> Any:
    """Round to nearest per group of `c.group` inputs, as a torch tensor of w's shape. Plain
    min/max grids: the scan ranks layers, and the ranking is what matters, not the last decimal
    of a layer's error."""
    import torch

    if c.bits == 16:
        return w
    rows, cols = w.shape
    g = w.reshape(rows, cols // c.group, c.group).to(torch.float32)
    if symmetric:
        qmax = 2 ** (c.bits - 1) - 1
        scale = g.abs().amax(-1, keepdim=True).clamp_min(1e-12) / qmax
        q = torch.clamp(torch.round(g / scale), -qmax - 1, qmax) * scale
    else:
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / (2 ** c.bits - 1)).clamp_min(1e-12)
        zero = torch.round(-lo / scale)
        q = (torch.clamp(torch.round(g / scale) + zero, 0, 2 ** c.bits - 1) - zero) * scale
    return q.reshape(rows, cols).to(w.dtype)


def kl_from(ref_logp: Any, logits: Any) -> float:
    """KL per token of `logits`' next-token distribution from the reference log-probabilities."""
    import torch

    logp = torch.log_softmax(logits.to(torch.float32), dim=-1)
    return float((ref_logp.exp() * (ref_logp - logp)).sum(-1).mean())


class Scanner:
    """Reruns a decoder from block i on, from the block inputs the float model gave on each
    window. Falls back to whole forwards where the model's head is not the plain
    norm -> lm_head this assumes (checked against the full forward, e.g. Gemma's soft-capping)."""

    def __init__(self, model: Any, windows: list[np.ndarray]) -> None:
        import torch

        self.model = model
        self.ids = [torch.as_tensor(np.asarray(w, np.int64).reshape(1, -1)) for w in windows]
        inner = getattr(model, "model", None)
        self.blocks = list(getattr(inner, "layers", []) or [])
        self.inputs: list[list[tuple[Any, dict[str, Any]]]] = [[] for _ in self.blocks]

        def hook(i: int) -> Any:
            def pre(_mod: Any, args: Any, kwargs: Any) -> None:
                self.inputs[i].append((tuple(a.clone() if torch.is_tensor(a) else a for a in args), dict(kwargs)))
            return pre

        handles = [b.register_forward_pre_hook(hook(i), with_kwargs=True) for i, b in enumerate(self.blocks)]
        with torch.no_grad():
            try:
                self.ref = [torch.log_softmax(model(x, use_cache=False).logits[0].to(torch.float32), -1)
                            for x in self.ids]
            finally:
                for h in handles:
                    h.remove()
        self.fast = bool(self.blocks) and all(len(v) == len(self.ids) for v in self.inputs) \
            and hasattr(inner, "norm") and hasattr(model, "lm_head")
        if self.fast:
            with torch.no_grad():
                got = self._tail(0, 0)
            self.fast = bool(torch.allclose(torch.log_softmax(got.to(torch.float32), -1), self.ref[0], atol=1e-3))

    def _tail(self, start: int, w: int, skip: bool = False) -> Any:
        """Logits of window w from block `start`'s cached input on (without block `start` itself
        when `skip`: what removing it gives)."""
        h = self.inputs[start][w][0][0]
        for j in range(start + int(skip), len(self.blocks)):
            a, kw = self.inputs[j][w]
            out = self.blocks[j](h, *a[1:], **kw)
            h = out[0] if isinstance(out, tuple) else out
        return self.model.lm_head(self.model.model.norm(h))[0]

    def first_block(self, names: list[str]) -> int:
        """The block a layer sits in (model.layers.<i>. ...); 0 when the name says otherwise."""
        best = len(self.blocks)
        for n in names:
            parts = n.split(".")
            for k, p in enumerate(parts[:-1]):
                if p == "layers" and parts[k + 1].isdigit():
                    best = min(best, int(parts[k + 1]))
        return 0 if best == len(self.blocks) else best

    def kl(self, names: list[str]) -> float:
        """KL per token, averaged over the windows, with the model as it is now (the caller has
        swapped the layers in `names`)."""
        import torch

        start = self.first_block(names)
        total = 0.0
        with torch.no_grad():
            for w, x in enumerate(self.ids):
                logits = self._tail(start, w) if self.fast else self.model(x, use_cache=False).logits[0]
                total += kl_from(self.ref[w], logits)
        return total / len(self.ids)


def scan(model: Any, windows: list[np.ndarray], groups: list[list[str]], choices: dict[int, list[Choice]],
         symmetric: bool, tick: Callable[[int], None]) -> dict[int, dict[Choice, float]]:
    """Every unit's KL at each of its candidate choices (a float choice costs nothing to scan:
    its KL is 0), with the rest of the model float."""
    import torch

    if not windows:
        raise StageError("the mixed-precision scan needs at least one calibration window")
    scanner = Scanner(model, windows)
    modules = dict(model.named_modules())
    out: dict[int, dict[Choice, float]] = {}
    for u, names in enumerate(groups):
        out[u] = {}
        saved = {n: modules[n].weight.detach().clone() for n in names}
        try:
            for c in choices[u]:
                if c.bits == 16:
                    out[u][c] = 0.0
                    continue
                with torch.no_grad():
                    for n in names:
                        modules[n].weight.copy_(fake_quantize(saved[n], c, symmetric))
                out[u][c] = max(0.0, scanner.kl(names))
                tick(1)
        finally:
            with torch.no_grad():
                for n in names:
                    modules[n].weight.copy_(saved[n])
    return out


def budget_bytes(shapes: dict[str, tuple[int, int]], fixed: dict[str, Choice], choice: Optional[Choice],
                 linear_mb: Union[None, float, dict[str, float]], symmetric: bool) -> dict[str, float]:
    """The budget in bytes for each target it holds: the bytes of every layer at `choice` (the
    uniform mix it must not outgrow) in each target's storage, or `linear_mb` megabytes of
    linear-layer weights, in both targets' storage or in the ones it names."""
    if isinstance(linear_mb, dict):
        return {t: linear_mb[t] * 1e6 for t in SCALE_BYTES if t in linear_mb}
    if linear_mb is not None:
        return {t: linear_mb * 1e6 for t in SCALE_BYTES}
    if choice is None:
        raise RecipeError("mixed: set same_size_as or linear_mb")
    return {t: sum(layer_bytes(*shapes[n], fixed.get(n, choice), symmetric, scale) for n in shapes)
            for t, scale in SCALE_BYTES.items()}


def scan_key(model: Any, windows: list[np.ndarray], groups: list[list[str]], choices: dict[int, list[Choice]],
             symmetric: bool) -> str:
    """What a scan's result depends on: every weight of the float model, the windows' tokens,
    the units and their candidates, the rounding and the torch version that ran it."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps([SCAN_FORMAT, torch.__version__, symmetric, groups,
                         {str(u): [[c.bits, c.group] for c in cs] for u, cs in choices.items()}]).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    for w in windows:
        h.update(np.asarray(w, np.int64).tobytes())
    return h.hexdigest()


def cached_scan(model: Any, windows: list[np.ndarray], groups: list[list[str]], choices: dict[int, list[Choice]],
                symmetric: bool, progress: Callable[[], Callable[[int], None]]
                ) -> tuple[dict[int, dict[Choice, float]], bool]:
    """The scan, or its stored result when the same model, windows and candidates were scanned
    before ($EDGEKIT_CACHE/mixed_scan): SmolLM2-135M's scan takes minutes and a user changing
    only the budget should not pay it again. `progress` is called only when the scan runs.
    Returns the harms and whether they came from the store."""
    key = scan_key(model, windows, groups, choices, symmetric)
    path = cache_dir("mixed_scan") / f"{key}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            harm: dict[int, dict[Choice, float]] = {u: {} for u in range(len(groups))}
            for u, bits, group, kl in stored["harm"]:
                harm[int(u)][Choice(int(bits), int(group))] = float(kl)
            if all(set(harm[u]) == set(choices[u]) for u in harm):
                return harm, True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable entry is scanned again and overwritten
    harm = scan(model, windows, groups, choices, symmetric, progress())
    rows = [[u, c.bits, c.group, kl] for u, by in harm.items() for c, kl in by.items()]
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"format": SCAN_FORMAT, "harm": rows}, f)
    os.replace(tmp, path)
    return harm, False
