"""edgekit's profiler against the peers' own timers, measured in the same run.

For each model file, rounds alternate (ABC ABC ...) between `edgekit profile` (fresh runner
process, the recipe protocol), OpenVINO's `benchmark_app`
(sync API, one stream, same threads: its CLI refuses -nthreads with a latency hint) and a bare ONNX Runtime loop (same session options), so that load on this shared machine hits
all of them alike. The table shows each median and edgekit's ratio to the peer on the same
runtime: close to 1.0 means edgekit's numbers can be trusted where the peer's are; edgekit adds
p90/p99, the early-stopping p90 bound, CV and peak RSS, which the peers do not report.

    .venv/bin/python -m benchmarks.latency_vs_peers [--seconds 3] [--rounds 3] [MODEL.onnx ...]

Prints a table and writes benchmarks/results/<cpu-class>/latency_vs_peers.json (benchmarks/_results.py).

Without models it profiles the default artifact (out/digits-cnn-int8, made by `make demo`)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402

BIN = Path(sys.executable).parent


def edgekit_median(model: Path, backend: str, seconds: float, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.json"
        subprocess.run([str(BIN / "edgekit"), "profile", str(model), "--backend", backend, "--threads", str(threads),
                        "--warmup", "1", "--min-duration", str(seconds), "--min-iters", "64", "-o", str(out)],
                       check=True, capture_output=True, text=True)
        doc = json.loads(out.read_text())
    (m,) = doc["measurements"].values()
    return m


def benchmark_app_median(model: Path, seconds: float, threads: int) -> float:
    exe = shutil.which("benchmark_app", path=str(BIN)) or shutil.which("benchmark_app")
    res = subprocess.run([exe, "-m", str(model), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-api", "sync", "-nthreads",
                          str(threads), "-t", str(int(max(1, seconds)))], check=True, capture_output=True, text=True)
    # it logs to stderr, in ms or (for fast models) us
    found = re.search(r"Median:\s+([\d.]+)\s*(ms|us)", res.stdout + res.stderr)
    if not found:
        raise RuntimeError(f"benchmark_app printed no median for {model}: {(res.stdout + res.stderr)[-400:]}")
    return float(found.group(1)) / (1000.0 if found.group(2) == "us" else 1.0)


def ort_loop_median(model: Path, seconds: float, threads: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.ones(shape, np.int64) if "int64" in i.type else np.zeros(shape, np.float32)
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        sess.run(None, feeds)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 64:
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    models = args.models or sorted(Path("out/digits-cnn-int8/models").glob("*.onnx"))
    if not models:
        sys.exit("no models: run `make demo` first or pass .onnx files")
    rows = []
    for model in models:
        acc: dict[str, list] = {"ek_ort": [], "ek_ov": [], "bench_app": [], "ort_loop": []}
        extra = {}
        for _ in range(args.rounds):
            m = edgekit_median(model, "onnxruntime", args.seconds, args.threads)
            acc["ek_ort"].append(m["median_ms"])
            extra = {k: m.get(k) for k in ("p90_ms", "p99_ms", "p90_upper_bound_ms", "cv")}
            extra["peak_rss_mb"] = m.get("peak_rss_mb")
            acc["ort_loop"].append(ort_loop_median(model, args.seconds, args.threads))
            acc["ek_ov"].append(edgekit_median(model, "openvino", args.seconds, args.threads)["median_ms"])
            acc["bench_app"].append(benchmark_app_median(model, args.seconds, args.threads))
        med = {k: statistics.median(v) for k, v in acc.items()}
        rows.append({"model": str(model), **med, "ratio_ort": med["ek_ort"] / med["ort_loop"],
                     "ratio_ov": med["ek_ov"] / med["bench_app"], "edgekit_ort_extra": extra, "rounds": acc})
    print(f"{'model':40s} {'edgekit ORT':>12s} {'bare ORT':>10s} {'ratio':>6s} {'edgekit OV':>11s} "
          f"{'benchmark_app':>14s} {'ratio':>6s}")
    shown = []
    for r in rows:
        print(f"{Path(r['model']).name:40s} {r['ek_ort']:12.4f} {r['ort_loop']:10.4f} {r['ratio_ort']:6.2f} "
              f"{r['ek_ov']:11.4f} {r['bench_app']:14.4f} {r['ratio_ov']:6.2f}")
        shown.append([Path(r["model"]).name, f"{r['ek_ort']:.4f}", f"{r['ort_loop']:.4f}", f"{r['ratio_ort']:.2f}",
                      f"{r['ek_ov']:.4f}", f"{r['bench_app']:.4f}", f"{r['ratio_ov']:.2f}"])
    print(f"medians in ms over {args.rounds} interleaved rounds of {args.seconds} s")
    save("latency_vs_peers", [table(
        f"edgekit profile against a bare ONNX Runtime loop and OpenVINO benchmark_app: median ms over "
        f"{args.rounds} interleaved rounds of {args.seconds} s, {args.threads} threads",
        ["model", "edgekit ORT ms", "bare ORT ms", "ratio", "edgekit OV ms", "benchmark_app ms", "ratio"], shown,
        "ratio = edgekit's median / the peer's median on the same runtime; close to 1.00 means edgekit's "
        "numbers agree with the peer's.")], rows)


if __name__ == "__main__":
    main()
