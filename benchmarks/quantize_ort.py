"""ONNX Runtime quantization: edgekit's modes against onnxruntime's own quantize_dynamic /
quantize_static defaults, all measured in this one run.

MiniLM (all-MiniLM-L6-v2, seq 128, batch 1, 2 threads): fidelity = mean cosine of the sentence
embedding vs PyTorch fp32 on held-out real sentences; speed = ORT fp32 median / median, every
variant timed in interleaved rounds, each opened afresh every round (median of the per-round
medians). Digits CNN and ViT: top-1 drop of edgekit's INT8 vs the PyTorch reference. Every
edgekit artifact comes from `edgekit.pipeline.run` (the one execution path); peers are built
from the same fp32.onnx.

    .venv/bin/python -m benchmarks.quantize_ort [--quick]

prints a table and writes benchmarks/results/<cpu-class>/quantize_ort.json (benchmarks/_results.py)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime import quantization as q

from edgekit.checks import metrics
from edgekit.profile.interleave import Rounds, Sessions, time_rounds
from edgekit.recipe import LoadedRecipe, parse_recipe
from edgekit.runtimes import open_runner

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402


def _run(data: dict[str, Any], out: Path):
    from edgekit.pipeline import run

    recipe = parse_recipe(data, data["name"])
    loaded = LoadedRecipe(recipe=recipe, path=Path(f"{data['name']}.yaml").resolve(), base_dir=Path.cwd(),
                          sha256="-", text=json.dumps(data))
    return run(loaded, out, force=True)


class _Reader:
    def __init__(self, samples):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)


def minilm(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    n_eval = 32 if quick else 96
    data = {
        "edgekit": 1, "name": "bench-minilm-ort", "model": {"python": "edgekit.models.zoo:minilm"},
        "data": {"calibration": {"builtin": "sentences", "split": "train", "samples": 64},
                 "evaluation": {"builtin": "sentences", "split": "test", "samples": n_eval}},
        "stages": [{"kind": "export.onnx", "opset": 17},
                   {"kind": "quantize.int8", "preset": "transformer"},
                   {"kind": "quantize.dynamic"},
                   # the same for VNNI/AMX CPUs only: full-range weights, no run-time option
                   {"kind": "quantize.dynamic", "name": "dynamic_vnni", "overflow_fix": "none"},
                   {"kind": "quantize.int4", "name": "int4_rtn", "method": "rtn", "group_size": 16,
                    "embeddings": True},
                   {"kind": "quantize.int4", "name": "int4_gptq", "method": "gptq", "group_size": 32,
                    "samples": 16}],
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.01, "samples": n_eval, "emulate": False},
        "deploy": {"accept_saturation": True},  # for dynamic_vnni; `auto` stages still choose for every x86 class
        "profile": {"enabled": False},
    }
    res = _run(data, tmp)
    models = res.out_dir / "models"
    ref = np.load(res.out_dir / "reference.npz")
    feeds = [{"input_ids": ref["input.input_ids"][i:i + 1], "attention_mask": ref["input.attention_mask"][i:i + 1]}
             for i in range(len(ref["output"]))]
    fp32 = models / "fp32.onnx"
    from edgekit.sources.data import load_data
    from edgekit.recipe import DataSpec

    cal = load_data(DataSpec(builtin="sentences", split="train", samples=64), feeds[0], "calibration",
                    Path.cwd(), {})
    peers = {}
    peers["ort quantize_dynamic (default)"] = tmp / "peer_dynamic.onnx"
    q.quantize_dynamic(str(fp32), str(peers["ort quantize_dynamic (default)"]),
                       extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    peers["ort quantize_static (default, all ops)"] = tmp / "peer_static.onnx"
    pre = tmp / "pre.onnx"
    q.quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    with contextlib.redirect_stdout(io.StringIO()):
        q.quantize_static(str(pre), str(peers["ort quantize_static (default, all ops)"]), _Reader(cal.samples))
    rows = [("ort fp32", fp32), *peers.items(),
            ("edgekit quantize.int8 (transformer preset)", models / "int8.onnx"),
            ("edgekit quantize.dynamic (portable: run-time option)", models / "dynamic_int8.onnx"),
            ("edgekit quantize.dynamic (overflow_fix none: VNNI/AMX only)", models / "dynamic_vnni.onnx"),
            ("edgekit quantize.int4 rtn g16 +embeddings", models / "int4_rtn.onnx"),
            ("edgekit quantize.int4 gptq g32", models / "int4_gptq.onnx")]
    # each edgekit artifact with the runner options its manifest records (e.g. an overflow fix)
    options = {res.out_dir / a["path"]: (a.get("runtime_options") or {}).get("onnxruntime", {})
               for a in res.manifest["artifacts"]}
    labels = [label for label, _ in rows]
    openers = [lambda path=path: open_runner("onnxruntime", path, 2, **options.get(path, {})) for _, path in rows]
    # interleaved: every round times every variant for a short block, each opened afresh, so the
    # shared machine's noise (and a session's own speed, edgekit.profile.interleave) lands on all
    # of them alike; median of the per-round medians
    timing = Rounds(3 if quick else 8, 0.5 if quick else 1.0, block_iters=10, warmup_s=0.3, rewarm_s=0.3,
                    max_block_s=10.0)
    with Sessions(openers) as sessions:
        fidelity = {label: float(metrics.cosine_per_sample(
            ref["output"], np.concatenate([sessions.runner(i).run(f)[0] for f in feeds])).mean())
            for i, label in enumerate(labels)}
        per_round = time_rounds([lambda i=i: sessions.runner(i).run(feeds[0]) for i in range(len(labels))], timing,
                                fresh=sessions.open)
    medians = {label: [float(np.median(x)) for x in per_round[i]] for i, label in enumerate(labels)}
    base_ms = float(np.median(medians["ort fp32"]))
    out = []
    for label, path in rows:
        ms = float(np.median(medians[label]))
        out.append({"model": "minilm", "variant": label, "fidelity": fidelity[label], "median_ms": ms,
                    "round_medians_ms": medians[label],
                    "speed_vs_ort_fp32": base_ms / ms, "size_mb": path.stat().st_size / 1e6,
                    "size_vs_fp32": path.stat().st_size / fp32.stat().st_size})
    return out


def digits(tmp: Path, model: str, preset: str) -> list[dict[str, Any]]:
    data = {
        "edgekit": 1, "name": f"bench-{model}-int8", "model": {"python": f"edgekit.models.zoo:{model}"},
        "inputs": [{"name": "x", "shape": [1, 1, 32, 32], "dtype": "float32"}],
        "data": {"calibration": {"builtin": "digits", "split": "train", "samples": 256},
                 "evaluation": {"builtin": "digits", "split": "test"}},
        "stages": [{"kind": "export.onnx", "opset": 17},
                   {"kind": "quantize.int8", "preset": preset,
                    "activations": {"calibration": "percentile", "percentile": 99.999}}],
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.5, "emulate": False}, "accuracy": {"metric": "top1"},
        "profile": {"enabled": False},
    }
    m = _run(data, tmp).manifest["metrics"]
    return [{"model": model, "variant": f"edgekit quantize.int8 ({preset})", "reference_top1": m["reference"]["value"],
             "top1": m["int8"]["onnxruntime"]["value"], "drop_points": 100 * m["int8"]["onnxruntime"]["drop"]}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer evaluation sentences, shorter timing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        rows = digits(Path(tmp), "digits_cnn", "cnn") + digits(Path(tmp), "digits_vit", "transformer")
        rows += minilm(Path(tmp), args.quick)
    print(f"{'model':<11}{'variant':<45}{'fidelity':>9}{'speed':>7}{'size':>7}{'top1 drop':>10}")
    shown = []
    for r in rows:
        print(f"{r['model']:<11}{r['variant']:<45}{r.get('fidelity', float('nan')):>9.4f}"
              f"{r.get('speed_vs_ort_fp32', float('nan')):>6.2f}x{r.get('size_vs_fp32', float('nan')):>6.2f}x"
              f"{r.get('drop_points', float('nan')):>9.2f}p")
        f = lambda key, spec, unit="": "–" if math.isnan(r.get(key, math.nan)) else f"{r[key]:{spec}}{unit}"  # noqa: E731
        shown.append([r["model"], r["variant"], f("fidelity", ".4f"), f("speed_vs_ort_fp32", ".2f", "x"),
                      f("size_vs_fp32", ".2f", "x"), f("drop_points", ".2f")])
    rounds = next(len(r["round_medians_ms"]) for r in rows if "round_medians_ms" in r)
    save("quantize_ort", [table(
        f"edgekit's ONNX Runtime modes against ONNX Runtime's own quantizers: MiniLM seq 128, batch 1, 2 threads, "
        f"{32 if args.quick else 96} held-out sentences, {rounds} interleaved timing rounds; digits CNN / ViT "
        f"top-1 on the test split",
        ["model", "variant", "fidelity", "speed vs ORT fp32", "size vs fp32", "top-1 drop (points)"], shown,
        "fidelity = mean cosine of the MiniLM sentence embedding vs PyTorch fp32; speed = ORT fp32 median / "
        "variant median (median of per-round medians, every variant opened afresh each round); top-1 drop vs "
        "the PyTorch reference.")], {"schema": 1, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
