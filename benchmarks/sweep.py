"""`edgekit sweep` against the two INT8 peers, timed in the same run on the same machine.

Runs examples/sweep_minilm.yaml (all-MiniLM-L6-v2, seq 128, batch 1, 2 threads; token schedule
x compression x runtime, on the local device) on a local Ray cluster. The two peers are trials
of that same sweep, so they are built and timed by the same code, protocol and machine as
everything else: ONNX Runtime dynamic INT8 (`quantize.dynamic`, no token merging) and OpenVINO +
NNCF INT8 (`target.openvino` precision int8, no token merging). Fidelity = mean cosine of the
sentence embedding vs PyTorch fp32 on held-out sentences.

The claim checked: the sweep's chosen recipe (fidelity >= 0.99) is at least as fast (p90) as
the faster of the two peers.

    .venv/bin/python -m benchmarks.sweep [--out DIR] [--max-concurrent N]

prints a table with the CPU class and writes benchmarks/results/<cpu-class>/sweep.json
(benchmarks/_results.py). The sweep's own output (trial artifacts, its cache for a resumed run)
goes to --out, by default out/bench-sweep (ignored by git)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "examples" / "sweep_minilm.yaml"


def _row(trial: dict[str, Any]) -> Optional[dict[str, Any]]:
    if trial["status"] != "ok" or not trial["results"]:
        return None
    r = trial["results"][0]
    return {"trial": trial["id"], "settings": trial["settings"], "cpu_class": trial["cpu_class"],
            "runtime": r["runtime"], "artifact": r["artifact"], "fidelity": r["fidelity"],
            "p50_ms": r["latency_p50_ms"], "p90_ms": r["latency_p90_ms"], "n": r["latency_n"]}


def _peer(trials: list[dict[str, Any]], kind: str) -> Optional[dict[str, Any]]:
    for t in trials:
        s = t["settings"]
        if s["stages[2]"]["kind"] == kind and s["stages[0].r"] == 0:
            row = _row(t)
            if row is not None:
                return row
    return None


def main() -> None:
    from edgekit.sweep import run

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench-sweep")
    ap.add_argument("--max-concurrent", type=int, default=None)
    args = ap.parse_args()
    res = run(SWEEP, args.out, max_concurrent=args.max_concurrent, resume=True)
    s = res.summary
    trials = s["trials"]
    chosen = s["chosen"]["local"]
    peers = {"ORT dynamic INT8": _peer(trials, "quantize.dynamic"),
             "OpenVINO + NNCF INT8": _peer(trials, "target.openvino")}
    timed = [p for p in peers.values() if p is not None]
    fastest_peer = min(timed, key=lambda p: p["p90_ms"]) if timed else None
    cls = next((t["cpu_class"] for t in trials if t["cpu_class"]), "?")
    cpu = s["devices"]["local"].get("cpu", "?")
    title = (f"MiniLM seq 128, batch 1, 2 threads, on {cpu} (class {cls}): the sweep's chosen recipe against the "
             f"two INT8 peers; {res.started} trials run, {res.cached} from cache")
    print(title)
    print(f"{'variant':34} {'runtime':12} {'fidelity':>9} {'p50 ms':>9} {'p90 ms':>9}")
    rows = [(name, p) for name, p in peers.items()]
    if chosen is not None:
        rows.append((f"sweep chosen ({chosen['trial'][:8]})", {"runtime": chosen["runtime"], "fidelity": chosen["fidelity"],
                                                               "p50_ms": chosen["latency_p50_ms"],
                                                               "p90_ms": chosen["latency_p90_ms"]}))
    shown = []
    for name, p in rows:
        if p is None:
            print(f"{name:34} not timed (failed trial: see sweep.json)")
            shown.append([name, "not timed (failed trial)", "–", "–", "–"])
        else:
            print(f"{name:34} {p['runtime']:12} {p['fidelity']:9.4f} {p['p50_ms']:9.2f} {p['p90_ms']:9.2f}")
            shown.append([name, p["runtime"], f"{p['fidelity']:.4f}", f"{p['p50_ms']:.2f}", f"{p['p90_ms']:.2f}"])
    verdict = None
    notes = "no verdict: the chosen recipe or both peers are missing."
    if chosen is not None and fastest_peer is not None:
        verdict = chosen["latency_p90_ms"] <= fastest_peer["p90_ms"] and chosen["fidelity"] >= 0.99
        notes = (f"chosen p90 {chosen['latency_p90_ms']:.2f} ms vs the faster peer {fastest_peer['p90_ms']:.2f} ms "
                 f"({fastest_peer['runtime']}): {'at least as fast' if verdict else 'SLOWER'}; chosen settings: "
                 f"`{json.dumps(chosen['settings'])}`")
        print(notes)
    all_rows = [r for r in (_row(t) for t in trials) if r is not None]
    trial_rows = [[r["trial"][:8], f"`{json.dumps(r['settings'])}`", r["runtime"], f"{r['fidelity']:.4f}", f"{r['p50_ms']:.2f}",
                   f"{r['p90_ms']:.2f}", str(r["n"])] for r in all_rows]
    failed = [{"settings": t["settings"], "error": t["error"]} for t in trials if t["status"] != "ok"]
    out = {"benchmark": "sweep", "cpu": cpu, "cpu_class": cls, "sweep": str(SWEEP.relative_to(ROOT)),
           "trials_run": res.started, "trials_cached": res.cached, "peers": peers, "chosen": chosen,
           "chosen_at_least_as_fast": verdict, "trials": all_rows, "failed": failed}
    save("sweep", [table(title, ["variant", "runtime", "fidelity", "p50 ms", "p90 ms"], shown,
                         "fidelity = mean cosine of the sentence embedding vs PyTorch fp32 on held-out sentences; "
                         + notes),
                   table(f"every timed trial of {SWEEP.relative_to(ROOT)} ({len(all_rows)} timed, {len(failed)} failed "
                         "or refused)", ["trial", "settings", "runtime", "fidelity", "p50 ms", "p90 ms", "samples"],
                         trial_rows)], out)


if __name__ == "__main__":
    main()
