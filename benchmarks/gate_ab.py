"""How often does the A/B latency gate get it right on this machine, against the naive check it
replaces (time base, then time candidate, fail when the median grew by more than 10%)?

Real ONNX Runtime runs of MatMul chains (depth 4 as the base; depth 4, 5 and 8 as candidates:
the same work, +25% and +100% of it). For each pair, REPEATS times: the gate (interleaved
rounds, `edgekit.gate`) and the naive sequential check with the same total timed seconds.
Prints a table and writes benchmarks/results/<cpu-class>/gate_ab.json (benchmarks/_results.py).

`--aa-under-load N` adds the case that once failed CI: the same model against itself, N times,
with another process keeping one core busy and the gate's smallest settings (6 rounds x 0.02 s),
once with ONNX Runtime's idle worker threads spinning (its default) and once with them off (what
`gate --ab` opens, the row's `side_by_side` settings), alternating repeat by repeat.

    .venv/bin/python -m benchmarks.gate_ab [--repeats 5] [--rounds 10] [--block-s 0.05] [--aa-under-load 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgekit.runtimes.cpu_classes import local_class as cpu_class

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402


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


def _busy() -> None:
    while True:
        pass


def aa_under_load(model: Path, repeats: int, threads: int) -> list[dict]:
    """A/A verdicts with one core taken by another process: ONNX Runtime sessions kept for the
    whole run, with spinning workers (its default) or without, against `gate --ab`'s own
    (no spinning, both opened afresh every round); the three cases alternate repeat by repeat."""
    import multiprocessing

    from edgekit.gate.ab import AbSettings, check_ab, side_from
    from edgekit.gate.compare import compare
    from edgekit.profile.interleave import Sessions, time_rounds
    from edgekit.runtimes import open_runner

    side = side_from(model, None, None)
    s = AbSettings(rounds=6, block_s=0.02)

    def kept(side_by_side: bool) -> str:
        opener = lambda: open_runner("onnxruntime", side.model, threads, side_by_side=side_by_side)  # noqa: E731
        with Sessions([opener, opener]) as sessions:  # no `fresh`: the first sessions time every round
            a, b = time_rounds([lambda: sessions.runner(0).run(side.feeds), lambda: sessions.runner(1).run(side.feeds)],
                               s.timing())
        return compare(a, b, s.min_effect, s.alpha, s.max_cv).status

    cases = {"sessions kept, spinning (ORT default)": lambda: kept(False),
             "sessions kept, no spinning": lambda: kept(True),
             "gate --ab (afresh every round)": lambda: check_ab(side, side, "onnxruntime", threads, s).status}
    verdicts: dict[str, Counter] = {label: Counter() for label in cases}
    hog = multiprocessing.Process(target=_busy, daemon=True)
    hog.start()
    try:
        for _ in range(repeats):
            for label, case in cases.items():
                verdicts[label][case()] += 1
    finally:
        hog.terminate()
    return [{"case": label, "verdicts": dict(v)} for label, v in verdicts.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block-s", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reopen", type=int, default=1, help="the gate's --reopen (0: keep the first sessions)")
    ap.add_argument("--aa-under-load", type=int, default=0, metavar="N")
    args = ap.parse_args()

    from edgekit.gate.ab import AbSettings, measure_ab, side_from
    from edgekit.runtimes import open_runner

    s = AbSettings(rounds=args.rounds, block_s=args.block_s, warmup_s=0.2, reopen=args.reopen)
    seconds = args.rounds * args.block_s  # the naive check gets the same timed seconds per side
    tmp = Path(tempfile.mkdtemp())
    base = side_from(matmul_chain(tmp / "d4.onnx", 4), None, None)
    rows = []
    for depth, truth in ((4, "same work"), (5, "+25% work"), (8, "+100% work")):
        cand = side_from(matmul_chain(tmp / f"c{depth}.onnx", depth), None, None)
        # the naive check keeps one session per model, as a script timing them would
        rb = open_runner("onnxruntime", base.model, args.threads)
        rc = open_runner("onnxruntime", cand.model, args.threads)
        run_b, run_c = (lambda: rb.run(base.feeds)), (lambda: rc.run(cand.feeds))
        gate, nv, effects, naive_effects, noise, reasons = Counter(), Counter(), [], [], [], []
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            c, _ = measure_ab(base, cand, "onnxruntime", args.threads, s)
            gate[c.status] += 1
            effects.append(c.effect)
            noise.append(c.noise)
            reasons.append(c.reason)
            v, e = naive(run_b, run_c, seconds, s.min_effect)
            nv[v] += 1
            naive_effects.append(e)
        rb.close()
        rc.close()
        rows.append({"candidate": f"depth {depth} ({truth})", "expected": "fail" if depth >= 5 else "pass",
                     "gate": dict(gate), "naive": dict(nv), "gate_effect_median": float(np.median(effects)),
                     "gate_noise_median": float(np.median(noise)), "naive_effect_median": float(np.median(naive_effects)),
                     "naive_effect_range": [float(min(naive_effects)), float(max(naive_effects))],
                     "gate_reasons": reasons, "seconds": round(time.perf_counter() - t0, 1)})
    print(f"CPU class {cpu_class()}")
    title = (f"A/B gate vs naive sequential check, {args.repeats} repeats, {args.rounds} rounds x {args.block_s}s "
             f"blocks, sessions opened afresh every {args.reopen or 'no'} round(s), ORT {args.threads} threads")
    print(title)
    print(f"{'candidate':24} {'expect':7} {'gate verdicts':32} {'naive verdicts':20} {'gate effect':>11} "
          f"{'A/A noise':>9} {'naive effect (range)':>24}")
    fmt = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()))  # noqa: E731
    shown = []
    for r in rows:
        lo, hi = r["naive_effect_range"]
        print(f"{r['candidate']:24} {r['expected']:7} {fmt(r['gate']):32} {fmt(r['naive']):20} "
              f"{r['gate_effect_median']:+10.1%} {r['gate_noise_median']:9.1%} "
              f"{r['naive_effect_median']:+8.1%} ({lo:+.1%}..{hi:+.1%})")
        shown.append([r["candidate"], r["expected"], fmt(r["gate"]), fmt(r["naive"]), f"{r['gate_effect_median']:+.1%}",
                      f"{r['gate_noise_median']:.1%}", f"{r['naive_effect_median']:+.1%} ({lo:+.1%}..{hi:+.1%})"])
    tables = [table(title, ["candidate", "expected", "gate verdicts", "naive verdicts", "gate effect", "A/A noise",
                            "naive effect (range)"], shown,
                    "MatMul chains on ONNX Runtime: depth 4 is the base; depth 5 and 8 do +25% and +100% of its work. "
                    "The naive check times base then candidate for the same total seconds and fails past +10%.")]
    loaded = aa_under_load(tmp / "d4.onnx", args.aa_under_load, args.threads) if args.aa_under_load else []
    if loaded:
        title = (f"A/A under load (one core busy), {args.aa_under_load} repeats of 6 rounds x 0.02 s, "
                 f"ORT {args.threads} threads, CPU class {cpu_class()}")
        print(f"\n{title}")
        for r in loaded:
            print(f"{r['case']:40} " + ", ".join(f"{k} {v}" for k, v in sorted(r["verdicts"].items())))
        tables.append(table(title, ["case", "verdicts"], [[r["case"], fmt(r["verdicts"])] for r in loaded],
                            "the same model against itself: any fail is a false alarm."))
    save("gate_ab", tables, {"settings": vars(args), "cpu_class": cpu_class(), "rows": rows, "aa_under_load": loaded})


if __name__ == "__main__":
    main()
