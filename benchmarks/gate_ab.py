"""How often does the A/B latency gate get it right on this machine, against the naive check it
replaces (time base, then time candidate, fail when the median grew by more than 10%)?

Real ONNX Runtime runs of MatMul chains (depth 4 as the base; depth 4, 5 and 8 as candidates:
the same work, +25% and +100% of it). For each pair, REPEATS times: the gate (interleaved
rounds, `edgekit.gate`) and the naive sequential check with the same total timed seconds.
Prints a table and writes benchmarks/results/gate_ab.json.

    .venv/bin/python benchmarks/gate_ab.py [--repeats 5] [--rounds 10] [--block-s 0.05]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_chain(path: Path, depth: int, n: int = 192, rows: int = 32) -> Path:
    """`depth` chained MatMuls with fixed random weights: depth 8 does exactly twice the
    arithmetic of depth 4 (also used by tests/test_gate_ab.py)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        inits.append(numpy_helper.from_array((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32), f"w{i}"))
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def naive(base, cand, seconds: float, min_effect: float) -> tuple[str, float]:
    """The check the gate replaces: one timed run of each, one after the other."""
    from edgekit.profile.latency import measure

    a = measure(base, 0.1, seconds, 10, 10 * seconds)["median_ms"]
    b = measure(cand, 0.1, seconds, 10, 10 * seconds)["median_ms"]
    effect = b / a - 1
    return ("fail" if effect > min_effect else "pass"), effect


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block-s", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from edgekit.gate.ab import AbSettings, run_rounds, side_from
    from edgekit.gate.compare import compare
    from edgekit.runtimes import open_runner

    s = AbSettings(rounds=args.rounds, block_s=args.block_s, warmup_s=0.2)
    seconds = args.rounds * args.block_s  # the naive check gets the same timed seconds per side
    tmp = Path(tempfile.mkdtemp())
    base = side_from(matmul_chain(tmp / "d4.onnx", 4), None, None)
    rows = []
    for depth, truth in ((4, "same work"), (5, "+25% work"), (8, "+100% work")):
        cand = side_from(matmul_chain(tmp / f"c{depth}.onnx", depth), None, None)
        rb = open_runner("onnxruntime", base.model, args.threads, side_by_side=True)
        rc = open_runner("onnxruntime", cand.model, args.threads, side_by_side=True)
        run_b, run_c = (lambda: rb.run(base.feeds)), (lambda: rc.run(cand.feeds))
        gate, nv, effects, naive_effects, noise, reasons = Counter(), Counter(), [], [], [], []
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            c = compare(*run_rounds(run_b, run_c, s), s.min_effect, s.alpha, s.max_cv)
            gate[c.status] += 1
            effects.append(c.effect)
            noise.append(c.noise)
            reasons.append(c.reason)
            v, e = naive(run_b, run_c, seconds, s.min_effect)
            nv[v] += 1
            naive_effects.append(e)
        rows.append({"candidate": f"depth {depth} ({truth})", "expected": "fail" if depth >= 5 else "pass",
                     "gate": dict(gate), "naive": dict(nv), "gate_effect_median": float(np.median(effects)),
                     "gate_noise_median": float(np.median(noise)), "naive_effect_median": float(np.median(naive_effects)),
                     "naive_effect_range": [float(min(naive_effects)), float(max(naive_effects))],
                     "gate_reasons": reasons, "seconds": round(time.perf_counter() - t0, 1)})
    print(f"A/B gate vs naive sequential check, {args.repeats} repeats, {args.rounds} rounds x {args.block_s}s "
          f"blocks, ORT {args.threads} threads")
    print(f"{'candidate':24} {'expect':7} {'gate verdicts':32} {'naive verdicts':20} {'gate effect':>11} "
          f"{'A/A noise':>9} {'naive effect (range)':>24}")
    for r in rows:
        fmt = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()))  # noqa: E731
        lo, hi = r["naive_effect_range"]
        print(f"{r['candidate']:24} {r['expected']:7} {fmt(r['gate']):32} {fmt(r['naive']):20} "
              f"{r['gate_effect_median']:+10.1%} {r['gate_noise_median']:9.1%} "
              f"{r['naive_effect_median']:+8.1%} ({lo:+.1%}..{hi:+.1%})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gate_ab.json"
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
