"""Quantization, measured against the peers in one run: all-MiniLM-L6-v2 (real weights, seq 128,
batch 1, 2 threads) as PyTorch fp32, ONNX Runtime fp32 / quantize_dynamic / quantize_static
defaults, OpenVINO fp32 (f32 hint) and default (bf16 on AMX), OpenVINO + NNCF INT8 done the way
an NNCF user does it, and edgekit's artifacts built by the stages of the recipes
recipes/minilm_int8_openvino.yaml, recipes/minilm_int4.yaml (and recipes/minilm_int8.yaml when it
exists). Fidelity = mean cosine vs PyTorch fp32 on the test split of edgekit's sentence corpus.
Latency: edgekit.profile.interleave, rounds interleaved over all variants (each opened afresh
every round), median of the per-round medians. Then the digits CNN / ViT INT8 top-1 drops.

    .venv/bin/python -m benchmarks.quantize [--quick] [--skip-digits]

Prints the tables and writes benchmarks/results/<cpu-class>/quantize.json (benchmarks/_results.py)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

from edgekit.checks import metrics
from edgekit.sources.data import load_data
from edgekit.export.onnx import ExportOnnx, ExportOnnxConfig
from edgekit.profile.interleave import Rounds, Sessions, time_rounds
from edgekit.recipe import DataSpec, load_recipe
from edgekit.runtimes import open_runner
from edgekit.runtimes.pytorch import TorchRunner
from edgekit.stages.registry import REGISTRY
from edgekit.stages.state import Artifact, Dataset, ModelState

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402

THREADS = 2
MINILM_RECIPES = ("minilm_int8_openvino.yaml", "minilm_int4.yaml", "minilm_int8.yaml")
DIGITS_RECIPE = "int8_pc.yaml"


def quiet() -> contextlib.AbstractContextManager:
    """The peers' calibrators print progress bars on stdout; keep stdout for the tables."""
    return contextlib.redirect_stdout(io.StringIO())


def data(spec: dict, example: dict[str, np.ndarray], info: dict) -> Dataset:
    return load_data(DataSpec(**spec), example, "bench", ROOT, info)


def exported(bundle: Any, calib: Dataset, workdir: Path) -> ModelState:
    """The float ONNX through edgekit's own export stage (TorchScript exporter, opset 17,
    onnxslim, parity-checked against PyTorch): the graph every ONNX-side variant starts from."""
    state = ModelState(torch_model=bundle.module, input_names=list(bundle.example), output_names=bundle.output_names,
                       example=bundle.example, workdir=workdir, calibration=calib, threads=THREADS)
    state, _ = ExportOnnx().run(state, ExportOnnxConfig(kind="export.onnx"))
    return state


def edgekit_artifacts(state: ModelState, recipes: tuple[str, ...], evaluation: Dataset) -> tuple[list[Artifact], dict]:
    """Run the recipes' post-export stages on the shared exported state, exactly as
    edgekit.pipeline does (same stage classes, same configs)."""
    seconds: dict[str, float] = {}
    for name in recipes:
        path = ROOT / "recipes" / name
        if not path.is_file():
            print(f"  ({name} not found: its artifacts are not in this run)")
            continue
        loaded = load_recipe(path)
        state.recipe, state.evaluation = loaded.recipe, evaluation
        for cfg in loaded.recipe.stages:
            if cfg.kind == "export.onnx":
                continue
            with quiet():
                state, record = REGISTRY[cfg.kind].load()().run(state, cfg)
            for out in record.outputs:
                seconds[out] = record.seconds
    return [a for a in state.artifacts if a.produced_by != "export.onnx"], seconds


def ort_dynamic(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(fp32), str(out))
    return out


class _Reader:
    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.it = iter(samples)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self.it, None)


def ort_static(fp32: Path, out: Path, calib: Dataset) -> Path:
    """quantize_static with every default (QDQ, S8S8, MinMax, per-tensor, all ops)."""
    from onnxruntime.quantization import quantize_static

    with quiet():
        quantize_static(str(fp32), str(out), _Reader(calib.samples))
    return out


def nncf_peer(module: Any, example: dict[str, np.ndarray], calib: Dataset, out: Path, transformer: bool) -> Path:
    """What the NNCF documentation shows: convert the torch model, nncf.quantize with the
    calibration feeds (model_type=TRANSFORMER for attention models), save the IR."""
    import nncf
    import openvino as ov
    import torch

    nncf.set_log_level(logging.ERROR)
    model = ov.convert_model(copy.deepcopy(module), example_input=tuple(torch.from_numpy(v) for v in example.values()))
    with quiet():
        q = nncf.quantize(model, nncf.Dataset([list(s.values()) for s in calib.samples]),
                          subset_size=len(calib), model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    ov.save_model(q, str(out))
    return out


def size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files) / 1e6


def outputs(run: Callable, samples: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(run(s)[0]) for s in samples])


# ------------------------------------------------------------------------------------------
# MiniLM


def minilm_rows(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from edgekit.models.zoo import minilm

    bundle = minilm(seq_len=128)
    info = bundle.info
    calib = data({"builtin": "sentences", "split": "train", "samples": 64}, bundle.example, info)
    test = data({"builtin": "sentences", "split": "test", **({"samples": 24} if args.quick else {})},
                bundle.example, info)
    print(f"MiniLM: {len(calib)} calibration / {len(test)} test sentences; building variants ...", flush=True)
    t0 = time.perf_counter()
    state = exported(bundle, calib, tmp)
    fp32 = state.onnx_path
    built: dict[str, float] = {"ORT fp32": time.perf_counter() - t0}
    ours, seconds = edgekit_artifacts(state, MINILM_RECIPES, test)
    t0 = time.perf_counter()
    dyn = ort_dynamic(fp32, tmp / "ort_dynamic.onnx")
    built["ORT quantize_dynamic (default)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sta = ort_static(fp32, tmp / "ort_static.onnx", calib)
    built["ORT quantize_static (default)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer = nncf_peer(bundle.module, bundle.example, calib, tmp / "nncf_int8.xml", transformer=True)
    built["OpenVINO + NNCF INT8 (peer)"] = time.perf_counter() - t0

    # openers, not runners: every variant is opened afresh each timing round
    # (edgekit.profile.interleave: a session kept for a whole run has a speed of its own)
    variants: list[tuple[str, str, Callable[[], Any], Optional[Path]]] = [
        ("PyTorch fp32", "peer", lambda: TorchRunner(bundle.module, THREADS), None),
        ("ORT fp32", "peer", lambda: open_runner("onnxruntime", fp32, THREADS), fp32),
        ("ORT quantize_dynamic (default)", "peer", lambda: open_runner("onnxruntime", dyn, THREADS), dyn),
        ("ORT quantize_static (default)", "peer", lambda: open_runner("onnxruntime", sta, THREADS), sta),
        ("OpenVINO fp32 (f32 hint)", "peer", lambda: open_runner("openvino", fp32, THREADS, precision="f32"), fp32),
        ("OpenVINO default (bf16)", "peer", lambda: open_runner("openvino", fp32, THREADS), fp32),
        ("OpenVINO + NNCF INT8 (peer)", "peer", lambda: open_runner("openvino", peer, THREADS), peer),
    ]
    for art in ours:
        for rt in art.runs_on[:1]:
            label = f"edgekit {art.name} ({rt}, {art.precision})"
            variants.append((label, "edgekit", lambda rt=rt, art=art: open_runner(rt, art.path, THREADS, **art.options.get(rt, {})),
                             art.path))
            built[label] = seconds.get(art.name, float("nan"))

    feeds = test.samples[0]
    rounds = 1 if args.quick else 3
    timing = Rounds(rounds, args.seconds, block_iters=8, warmup_s=0.3, rewarm_s=0.3, max_block_s=4 * args.seconds + 5)
    with Sessions([v[2] for v in variants]) as sessions:
        ref = outputs(sessions.runner(0).run, test.samples)
        outs = [ref] + [outputs(sessions.runner(i).run, test.samples) for i in range(1, len(variants))]
        details = [sessions.runner(i).details for i in range(len(variants))]
        timed = time_rounds([lambda i=i: sessions.runner(i).run(feeds) for i in range(len(variants))], timing,
                            fresh=sessions.open, tick=lambda n: print("  latency round done", flush=True))
    per_round = {v[0]: [float(np.median(x)) for x in timed[i]] for i, v in enumerate(variants)}
    med = {k: float(np.median(v)) for k, v in per_round.items()}
    fp32_mb = size_mb(fp32)
    rows = []
    for i, (label, who, _, path) in enumerate(variants):
        out = outs[i]
        rows.append({
            "model": "minilm", "variant": label, "by": who, "median_ms": med[label],
            "round_medians_ms": per_round[label],
            "speed_vs_ort_fp32": med["ORT fp32"] / med[label], "speed_vs_pytorch": med["PyTorch fp32"] / med[label],
            "fidelity": float(metrics.cosine_per_sample(ref, out).mean()),
            "fidelity_worst": float(metrics.cosine_per_sample(ref, out).min()),
            "size_mb": size_mb(path) if path else None,
            "size_vs_fp32_onnx": size_mb(path) / fp32_mb if path else None,
            "build_s": built.get(label), "runner": details[i],
        })
    return rows


# ------------------------------------------------------------------------------------------
# digits CNN / ViT: top-1 drops


def digits_rows(tmp: Path) -> list[dict[str, Any]]:
    from edgekit.models import zoo

    rows = []
    for name in ("digits_cnn", "digits_vit"):
        bundle = getattr(zoo, name)()
        calib = data({"builtin": "digits", "split": "train", "samples": 128}, bundle.example, {})
        test = data({"builtin": "digits", "split": "test"}, bundle.example, {})
        work = tmp / name
        work.mkdir()
        state = exported(bundle, calib, work)
        fp32 = state.onnx_path
        loaded = load_recipe(ROOT / "recipes" / DIGITS_RECIPE)
        cfgs = [c for c in loaded.recipe.stages if c.kind == "quantize.int8"]
        from edgekit.export.openvino import OpenVINOConfig

        cfgs.append(OpenVINOConfig(kind="target.openvino", precision="int8", subset_size=len(calib)))
        for cfg in cfgs:
            with quiet():
                state, _ = REGISTRY[cfg.kind].load()().run(state, cfg)
        ours = [a for a in state.artifacts if a.produced_by != "export.onnx"]
        variants: list[tuple[str, Callable[[], Any]]] = [
            ("PyTorch fp32", lambda: TorchRunner(bundle.module, THREADS)),
            ("ORT quantize_dynamic (default)",
             lambda: open_runner("onnxruntime", ort_dynamic(fp32, work / "dyn.onnx"), THREADS)),
            ("ORT quantize_static (default)",
             lambda: open_runner("onnxruntime", ort_static(fp32, work / "static.onnx", calib), THREADS)),
            ("OpenVINO + NNCF INT8 (peer)", lambda: open_runner("openvino", nncf_peer(
                bundle.module, bundle.example, calib, work / "nncf.xml", transformer=name == "digits_vit"), THREADS)),
        ]
        variants += [(f"edgekit {a.name} ({a.runs_on[0]})",
                      lambda a=a: open_runner(a.runs_on[0], a.path, THREADS, **a.options.get(a.runs_on[0], {})))
                     for a in ours]
        base = None
        for label, make in variants:
            try:
                top1 = metrics.top1(outputs(make().run, test.samples), test.labels)
            except Exception as exc:  # a peer that cannot build or compile is a result, not a crash
                rows.append({"model": name, "variant": label, "error": str(exc).strip().splitlines()[0][:160]})
                continue
            base = top1 if base is None else base
            rows.append({"model": name, "variant": label, "top1": top1, "drop_points": 100 * (base - top1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 test sentences, 1 latency round of 0.5 s")
    ap.add_argument("--seconds", type=float, default=None, help="timed seconds per variant per round")
    ap.add_argument("--skip-digits", action="store_true")
    args = ap.parse_args()
    args.seconds = args.seconds or (0.5 if args.quick else 1.0)
    import torch

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = minilm_rows(args, tmp)
        rounds = len(rows[0]["round_medians_ms"])
        n_test = 24 if args.quick else None
        print(f"\nall-MiniLM-L6-v2, seq 128, batch 1, {THREADS} threads "
              f"(speed = time ratio, median of interleaved rounds)")
        print(f"{'variant':44} {'ms':>7} {'vs ORT fp32':>11} {'vs PyTorch':>10} {'fidelity':>9} {'size MB':>8} {'x fp32':>7}")
        shown = []
        for r in rows:
            size = f"{r['size_mb']:8.1f} {r['size_vs_fp32_onnx']:7.2f}" if r["size_mb"] else f"{'':8} {'':7}"
            print(f"{r['variant']:44} {r['median_ms']:7.2f} {r['speed_vs_ort_fp32']:11.2f} "
                  f"{r['speed_vs_pytorch']:10.2f} {r['fidelity']:9.4f} {size}")
            shown.append([r["variant"], f"{r['median_ms']:.2f}", f"{r['speed_vs_ort_fp32']:.2f}",
                          f"{r['speed_vs_pytorch']:.2f}", f"{r['fidelity']:.4f}",
                          f"{r['size_mb']:.1f}" if r["size_mb"] else "–",
                          f"{r['size_vs_fp32_onnx']:.2f}" if r["size_mb"] else "–"])
        tables.append(table(
            f"all-MiniLM-L6-v2 against PyTorch, ONNX Runtime and OpenVINO / NNCF peers: seq 128, batch 1, "
            f"{THREADS} threads, {rounds} interleaved round(s) of {args.seconds} s per variant, fidelity on "
            f"{'24' if n_test else 'all'} test sentences",
            ["variant", "ms", "speed vs ORT fp32", "speed vs PyTorch", "fidelity", "size MB", "size vs fp32 ONNX"],
            shown, "speed = time ratio, median of the per-round medians (every variant opened afresh each round); "
            "fidelity = mean cosine of the sentence embedding vs PyTorch fp32."))
        drows = [] if args.skip_digits else digits_rows(tmp)
        if drows:
            print("\ndigits: top-1 on the test split, drop in points vs PyTorch fp32")
            print(f"{'model':11} {'variant':44} {'top-1':>7} {'drop':>6}")
            dshown = []
            for r in drows:
                shown = f"{100 * r['top1']:7.2f} {r['drop_points']:6.2f}" if "top1" in r else f"failed: {r['error']}"
                print(f"{r['model']:11} {r['variant']:44} {shown}")
                dshown.append([r["model"], r["variant"], f"{100 * r['top1']:.2f}", f"{r['drop_points']:.2f}"]
                              if "top1" in r else [r["model"], r["variant"], f"failed: {r['error']}", "–"])
            tables.append(table(
                f"digits CNN / ViT INT8: top-1 on the test split, {THREADS} threads, drop in points vs PyTorch fp32",
                ["model", "variant", "top-1 %", "drop (points)"], dshown))
    from edgekit.artifact.environment import fingerprint

    save("quantize", tables, {
        "quick": args.quick, "seconds_per_round": args.seconds,
        "minilm": rows, "digits": drows, "total_s": time.perf_counter() - t0, "environment": fingerprint(),
    })
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
