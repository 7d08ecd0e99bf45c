"""Streaming activation-range calibration with bounded memory.

onnxruntime's percentile and entropy calibrators keep every intermediate output of every
calibration sample in memory before building histograms (hundreds of MB for MiniLM at 128
samples), and it has no MSE method. So the collection and range search are written here: one
fixed-size histogram per tensor, updated per sample and widened by exact bin merging, then a
range chosen per tensor by minmax, percentile, entropy (KL) or MSE. The ranges are handed to
`onnxruntime.quantization.quantize_static` as a calibration cache (`write_cache`), which makes
it skip its own calibration entirely; everything else (QDQ insertion, per-channel weights,
scales and zero points) stays onnxruntime's.

Memory: `bins` float64 counts per tensor plus one sample's outputs, whatever the sample count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

METHODS = ("minmax", "percentile", "entropy", "mse")
DEFAULT_BINS = 2048


@dataclass
class Histogram:
    """Counts of a tensor's values over [lo, hi] in `bins` equal bins, plus the exact extremes.

    The range only grows, by doubling its width and summing adjacent bin pairs, so bin edges
    stay aligned and no count is ever re-estimated."""

    bins: int = DEFAULT_BINS  # even, so that doubling merges whole bin pairs
    lo: float = 0.0
    hi: float = 0.0
    counts: Optional[np.ndarray] = None
    vmin: float = np.inf
    vmax: float = -np.inf

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float32).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        mn, mx = float(x.min()), float(x.max())
        self.vmin, self.vmax = min(self.vmin, mn), max(self.vmax, mx)
        if self.counts is None:
            lo, hi = min(mn, 0.0), max(mx, 0.0)
            if hi - lo <= 0.0:
                hi = lo + 1e-8
            self.lo, self.hi = lo, hi
            self.counts = np.zeros(self.bins, np.float64)
        while mn < self.lo or mx > self.hi:
            self._double(upward=mx > self.hi)
        idx = ((x - self.lo) * (self.bins / (self.hi - self.lo))).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.bins)

    def _double(self, upward: bool) -> None:
        width = self.hi - self.lo
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        counts = np.zeros(self.bins, np.float64)
        if upward:
            counts[: self.bins // 2] = merged
            self.hi = self.lo + 2 * width
        else:
            counts[self.bins // 2 :] = merged
            self.lo = self.hi - 2 * width
        self.counts = counts

    @property
    def total(self) -> float:
        return float(self.counts.sum()) if self.counts is not None else 0.0

    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)


def minmax_range(h: Histogram) -> tuple[float, float]:
    return float(h.vmin), float(h.vmax)


def percentile_range(h: Histogram, percentile: float) -> tuple[float, float]:
    """Clip (100 - percentile)% of the mass, half from each tail (bin-edge resolution), never
    beyond the observed extremes."""
    cdf = np.cumsum(h.counts) / h.total
    tail = (1.0 - percentile / 100.0) / 2.0
    edges = h.edges()
    lo_i = int(np.searchsorted(cdf, tail, side="right"))
    hi_i = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    # clamped to the observed extremes on both sides: with a range of a few denormals the bin
    # edges underflow, and an edge may fall outside [vmin, vmax] on the other side
    lo = min(max(float(edges[min(lo_i, h.bins - 1)]), h.vmin), h.vmax)
    hi = max(min(float(edges[min(hi_i + 1, h.bins)]), h.vmax), h.vmin)
    return min(lo, hi), max(lo, hi)


def _candidates(h: Histogram, steps: int, min_bins: int = 1) -> list[tuple[int, int]]:
    """Candidate clipping ranges as bin index pairs [i0, i1): every pair of tail cut-offs from a
    grid that shrinks each side of the observed range towards zero independently."""
    edges = h.edges()
    lo_b = int(np.clip(np.searchsorted(edges, h.vmin, side="right") - 1, 0, h.bins - 1))
    hi_b = int(np.clip(np.searchsorted(edges, h.vmax, side="left"), 1, h.bins))
    zero_b = int(np.clip(round(-h.lo / (h.hi - h.lo) * h.bins), 0, h.bins))
    fr = np.linspace(1.0, 1.0 / steps, steps)
    los = sorted({int(zero_b - round(f * (zero_b - lo_b))) for f in fr} if lo_b < zero_b else {lo_b})
    his = sorted({int(zero_b + round(f * (hi_b - zero_b))) for f in fr} if hi_b > zero_b else {hi_b})
    pairs = [(a, b) for a in los for b in his if b - a >= min_bins]
    return pairs or [(lo_b, hi_b)]


def mse_range(h: Histogram, levels: int = 256, steps: int = 48) -> tuple[float, float]:
    """The clipping range minimizing expected squared quantization error: values inside pay
    step^2 / 12 (uniform rounding), values outside pay their distance to the nearest bound."""
    edges = h.edges()
    centers = (edges[:-1] + edges[1:]) / 2
    best, best_err = (h.vmin, h.vmax), np.inf
    for a, b in _candidates(h, steps):
        lo, hi = float(edges[a]), float(edges[b])
        step = (hi - lo) / (levels - 1)
        clip = np.where(centers < lo, lo - centers, np.where(centers > hi, centers - hi, 0.0))
        err = float(np.sum(h.counts * (clip**2 + (clip == 0) * step * step / 12.0)))
        if err < best_err:
            best, best_err = (lo, hi), err
    lo, hi = best
    return max(lo, h.vmin), min(hi, h.vmax)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


def entropy_range(h: Histogram, levels: int = 256, steps: int = 48) -> tuple[float, float]:
    """The clipping range whose quantized distribution is closest in KL divergence to the
    clipped one, as in TensorRT's entropy calibration: the reference P folds the clipped
    outliers into its edge bins, the candidate Q spreads each quantization level's in-range
    mass over its non-empty bins, so clipping and coarse levels both cost."""
    edges = h.edges()
    best, best_kl = (h.vmin, h.vmax), np.inf
    for a, b in _candidates(h, steps, min_bins=levels):
        inside = h.counts[a:b]
        p = inside.copy()
        p[0] += h.counts[:a].sum()
        p[-1] += h.counts[b:].sum()
        n = len(p)
        groups = np.minimum((np.arange(n) * levels) // n, levels - 1)
        occupied = (inside > 0).astype(np.float64)
        mass = np.bincount(groups, inside, levels)
        nonzero = np.bincount(groups, occupied, levels)
        q = np.where(occupied > 0, mass[groups] / np.maximum(nonzero[groups], 1), 0.0)
        kl = _kl(p / p.sum(), q / max(q.sum(), 1e-12))
        if kl < best_kl:
            best, best_kl = (float(edges[a]), float(edges[b])), kl
    lo, hi = best
    return max(lo, h.vmin), min(hi, h.vmax)


def choose_range(h: Histogram, method: str, percentile: float = 99.999, levels: int = 256) -> tuple[float, float]:
    if method == "minmax":
        return minmax_range(h)
    if method == "percentile":
        return percentile_range(h, percentile)
    if method == "entropy":
        return entropy_range(h, levels)
    if method == "mse":
        return mse_range(h, levels)
    raise ValueError(f"calibration method {method!r}; allowed: {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------
# collection on an ONNX graph


def tensors_to_calibrate(model: Any, op_types: Optional[Iterable[str]]) -> list[str]:
    """Float activations (not initializers) entering or leaving the nodes that may be quantized."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    inits = {i.name for i in g.initializer}
    wanted = set(op_types) if op_types else None
    out: dict[str, None] = {}
    for node in g.node:
        if wanted is None or node.op_type in wanted:
            for t in [*node.input, *node.output]:
                if t and t not in inits and types.get(t) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                    out.setdefault(t, None)
    return list(out)


def exposing_session(model_path: Path, tensors: list[str], threads: int = 2) -> tuple[Any, list[str]]:
    """An unoptimized ONNX Runtime session of the float graph with `tensors` added as outputs (so
    they keep the names calibration assigns ranges to) and the graph's input names."""
    import onnx

    from edgekit.core.backends import require

    ort = require("onnxruntime", extra="onnx")
    model = onnx.load(str(model_path))
    present = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    from edgekit.runtimes.device_side import feed_names

    return sess, feed_names(sess)


def collect(model_path: Path, samples: list[dict[str, np.ndarray]], op_types: Optional[Iterable[str]],
            bins: int = DEFAULT_BINS, threads: int = 2,
            tick: Callable[[int], None] = lambda n: None) -> dict[str, Histogram]:
    """Run the graph with every tensor to calibrate exposed as an output, one sample at a time,
    folding each output into its histogram before the next sample runs."""
    import onnx

    names = tensors_to_calibrate(onnx.load(str(model_path), load_external_data=False), op_types)
    sess, inputs = exposing_session(model_path, names, threads)
    hists = {n: Histogram(bins) for n in names}
    for s in samples:
        outs = sess.run(names, {k: s[k] for k in inputs})
        for n, v in zip(names, outs):
            hists[n].update(v)
        tick(1)
    return hists


def ranges(hists: dict[str, Histogram], method: str, percentile: float = 99.999,
           levels: int = 256) -> dict[str, tuple[float, float]]:
    return {n: choose_range(h, method, percentile, levels) for n, h in hists.items() if h.total > 0}


def write_cache(rng: dict[str, tuple[float, float]], path: Path) -> None:
    """Store ranges in onnxruntime's calibration-cache format; `quantize_static(...,
    calibration_cache_path=path, calibrate_method=MinMax)` then uses them as they are."""
    from edgekit.core.backends import require

    cal = require("onnxruntime.quantization.calibrate", extra="onnx")
    data = {n: cal.TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for n, (lo, hi) in rng.items()}
    cal.save_tensors_data(cal.TensorsData(cal.CalibrationMethod.MinMax, data), path)
