"""The report's figures, each returned as a base64 PNG so report.html stays one self-contained
file (no network, no scripts). matplotlib (the 'report' extra) is imported lazily with the Agg
backend, so a headless CI machine renders the same figures as a laptop."""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np

WIDTH = 7.5  # inches at 100 dpi: fits the report's column


def _pyplot() -> Any:
    from edgekit.core.backends import require

    matplotlib = require("matplotlib", extra="report", why="report.html plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    # no Software/date metadata: the same run renders byte-identical figures
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and metric."""
    sign = 1.0 if higher_is_better else -1.0
    front = []
    for i, (lat, val) in enumerate(points):
        dominated = any(
            (l2 <= lat and sign * v2 >= sign * val) and (l2 < lat or sign * v2 > sign * val)
            for j, (l2, v2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def latency_cdf(samples: dict[str, Sequence[float]], bounds: dict[str, float | None]) -> str:
    """Empirical CDF per measurement (log time axis: artifacts differ by multiples), with the
    p90 early-stopping bound that budgets compare marked on each curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for key, xs in samples.items():
        x = np.sort(np.asarray(xs, dtype=np.float64))
        y = np.arange(1, len(x) + 1) / len(x)
        (line,) = ax.step(x, y, where="post", label=f"{key} (n={len(x)})")
        b = bounds.get(key)
        if b is not None:
            ax.plot([b], [0.9], marker="v", color=line.get_color(), markersize=8)
    ax.axhline(0.9, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms, log scale)")
    ax.set_ylabel("fraction of runs ≤ x")
    ax.set_title("Latency distribution (▼ = p90 early-stopping upper bound, 99% confidence)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def accuracy_vs_latency(points: list[dict[str, Any]], metric: str, higher_is_better: bool,
                        xlabel: str = "median latency (ms, log scale)",
                        title: str = "Accuracy vs latency per artifact and runtime") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    xy = [(p["latency_ms"], p["value"]) for p in points]
    front = pareto_front(xy, higher_is_better)
    for i, p in enumerate(points):
        on = i in front
        ax.scatter([p["latency_ms"]], [p["value"]], s=60 if on else 30, marker="o" if on else "x",
                   color="tab:blue" if on else "tab:grey", zorder=3)
        ax.annotate(p["label"], (p["latency_ms"], p["value"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    fx = sorted((xy[i] for i in front))
    ax.plot([x for x, _ in fx], [y for _, y in fx], color="tab:blue", lw=1, ls="--", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def bars(values: dict[str, float], xlabel: str, title: str, highlight_max: bool = False) -> str:
    """Horizontal bars, one per name (artifact sizes, per-layer sensitivity or sparsity, energy)."""
    plt = _pyplot()
    names = list(values)
    v = np.array([values[n] for n in names], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(WIDTH, max(1.4, 0.28 * len(names) + 0.9)))
    colors = ["tab:red" if highlight_max and x == v.max() else "tab:blue" for x in v]
    ax.barh(range(len(names)), v, color=colors)
    ax.set_yticks(range(len(names)), labels=names, fontsize=8)
    ax.invert_yaxis()
    for i, x in enumerate(v):
        ax.text(x, i, f" {x:.4g}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)
