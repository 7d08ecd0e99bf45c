"""Quantization-aware training of encoders (`finetune.qat`) against post-training quantization of
the same scheme, every artifact built by `edgekit.pipeline.run` in one run and scored by
edgekit's verification on held-out data:

- the digits ViT, static INT8 (QDQ, 7-bit weights so that it is safe on every x86 class) in
  three schemes: every op in INT8 (`preset: cnn`) with min/max and with entropy calibration,
  and the transformer preset with entropy calibration; top-1 on the test split against PyTorch
  fp32, output cosine and top-1 agreement, and the speed of each against ONNX Runtime fp32
  (interleaved rounds, every session opened afresh each round);
- all-MiniLM-L6-v2, INT4 (MatMulNBits), asymmetric groups of 16 with the embedding tables packed
  (the smallest artifact) and groups of 32 without; fidelity = mean cosine of the sentence
  embedding against PyTorch fp32 on the held-out sentences.

    .venv/bin/python -m benchmarks.encoder_qat [--vit-epochs 5] [--vit-lr 1e-4] [--minilm-epochs 3]
        [--minilm-samples 256] [--rounds 3] [--skip-minilm]

prints the tables and writes benchmarks/results/<cpu-class>/encoder_qat.json."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._results import print_tables, save, table
from edgekit.runtimes.cpu_classes import local_class

THREADS = 2
VIT_SCHEMES = {
    "all ops, min/max": {"preset": "cnn", "activations": {"calibration": "minmax"}},
    "all ops, entropy": {"preset": "cnn", "activations": {"calibration": "entropy"}},
    "transformer preset, entropy": {"preset": "transformer", "activations": {"calibration": "entropy"}},
}
MINILM_SCHEMES = {
    "g16 asym + embeddings": {"group_size": 16, "embeddings": True},
    "g32 asym": {"group_size": 32},
}


def _recipe(name: str, model: str, data: dict[str, Any], stages: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    r: dict[str, Any] = {
        "edgekit": 1, "name": name, "model": {"python": model}, "data": data, "stages": stages,
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.5, "samples": 64, "emulate": False},
        "accuracy": {"metric": metric, "max_drop": 0.5},
        "profile": {"warmup_s": 0.05, "min_duration_s": 0.1, "min_iters": 4, "max_duration_s": 2},
    }
    if model.endswith("digits_vit"):
        r["inputs"] = [{"name": "x", "shape": [1, 1, 32, 32], "dtype": "float32"}]
    return r


def _run(tmp: Path, recipe: dict[str, Any]) -> tuple[dict[str, Any], float]:
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    path = tmp / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    t0 = time.perf_counter()
    result = run(load_recipe(path), tmp / "out", force=True)
    return result.manifest, time.perf_counter() - t0


def _qat_record(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(s["measured"] for s in manifest["stages"] if s["kind"] == "finetune.qat")


def _speeds(paths: dict[str, Path], rounds: int, seconds: float) -> dict[str, float]:
    """ONNX Runtime fp32 median / variant median, interleaved rounds, sessions opened afresh."""
    from edgekit.profile.interleave import Rounds, Sessions, time_rounds
    from edgekit.runtimes import open_runner

    names = list(paths)
    feeds = {"x": np.zeros((1, 1, 32, 32), np.float32)}
    timing = Rounds(rounds, seconds, block_iters=16, warmup_s=0.3, rewarm_s=0.3)
    with Sessions([lambda p=paths[n]: open_runner("onnxruntime", p, THREADS) for n in names]) as sessions:
        timed = time_rounds([lambda i=i: sessions.runner(i).run(feeds) for i in range(len(names))], timing,
                            fresh=sessions.open)
    med = {n: float(np.median([np.median(x) for x in timed[i]])) for i, n in enumerate(names)}
    return {n: med["fp32"] / med[n] for n in names}


def vit(tmp: Path, epochs: int, lr: float, rounds: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = {"calibration": {"builtin": "digits", "split": "train", "samples": 128},
            "evaluation": {"builtin": "digits", "split": "test"}}
    model = "edgekit.models.zoo:digits_vit"
    quant = {label: {"kind": "quantize.int8", "name": f"s{i}", "overflow_fix": "reduce_range", **s}
             for i, (label, s) in enumerate(VIT_SCHEMES.items())}
    print("digits ViT: post-training quantization, every scheme", flush=True)
    ptq, ptq_s = _run(tmp, _recipe("vit-ptq", model, data, [{"kind": "export.onnx"}, *quant.values()], "top1"))
    found: dict[str, Any] = {"ptq_build_s": ptq_s}
    rows, paths = [], {"fp32": tmp / "out" / "vit-ptq" / "models" / "fp32.onnx"}
    for label, q in quant.items():
        print(f"digits ViT: QAT for {label}", flush=True)
        stages = [{"kind": "finetune.qat", "epochs": epochs, "lr": lr, "quantizer": q["name"]},
                  {"kind": "export.onnx"}, q]
        qat, qat_s = _run(tmp, _recipe(f"vit-qat-{q['name']}", model, data, stages, "top1"))
        for how, m in (("PTQ", ptq), ("QAT", qat)):
            x = m["metrics"][q["name"]]["onnxruntime"]
            found[f"{label}/{how}"] = {**x, "build_s": ptq_s if how == "PTQ" else qat_s}
            paths[f"{label}/{how}"] = tmp / "out" / m["name"] / "models" / f"{q['name']}.onnx"
        found[f"{label}/QAT"]["record"] = _qat_record(qat)
    print("digits ViT: timing every artifact against ONNX Runtime fp32", flush=True)
    speed = _speeds(paths, rounds, 0.5)
    reference = ptq["metrics"]["fp32"]["onnxruntime"]["reference"]
    for label in quant:
        for how in ("PTQ", "QAT"):
            x = found[f"{label}/{how}"]
            x["speed_vs_fp32"] = speed[f"{label}/{how}"]
            rows.append([label, how, 100 * x["value"], f"{100 * x['drop']:+.2f}", x["parity"]["cosine_mean"],
                         x["parity"]["top1_agreement"], f"{x['speed_vs_fp32']:.2f}x", round(x["build_s"], 1)])
    best = min(found[f"{label}/QAT"]["drop"] for label in quant)
    targets = [["digits ViT static INT8: top-1 drop with QAT (best scheme)", f"{100 * best:+.2f} points",
                "<= 0.1 point", "met" if 100 * best <= 0.1 else "not met"]]
    tables = [table(f"digits ViT static INT8 (QDQ, 7-bit weights, U8 activations) on {local_class()}: PyTorch fp32 "
                    f"top-1 {100 * reference:.2f}% on the test split ({len(quant)} schemes, PTQ vs {epochs} epochs of "
                    f"QAT at lr {lr:g} distilled from fp32)",
                    ["scheme", "method", "top-1 %", "drop (points)", "cosine", "top-1 agr.", "speed vs ORT fp32",
                     "build s"], rows,
                    notes="cosine and agreement on 64 test images against PyTorch fp32; one test image is 0.19 "
                          "points; speed = ONNX Runtime fp32 median / variant median over interleaved rounds")]
    return tables + [table("Targets (ViT)", ["target", "measured", "goal", "status"], targets)], found


def minilm(tmp: Path, epochs: int, samples: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    model = "edgekit.models.zoo:minilm"
    data = {"calibration": {"builtin": "sentences", "split": "train", "samples": samples},
            "evaluation": {"builtin": "sentences", "split": "test"}}
    found: dict[str, Any] = {}
    rows = []
    for i, (label, s) in enumerate(MINILM_SCHEMES.items()):
        q = {"kind": "quantize.int4", "name": f"g{i}", **s}
        print(f"MiniLM INT4 {label}: PTQ (RTN)", flush=True)
        ptq, ptq_s = _run(tmp, _recipe(f"minilm-ptq-{i}", model, data, [{"kind": "export.onnx"}, q],
                                       "cosine_fidelity"))
        print(f"MiniLM INT4 {label}: QAT, {epochs} epochs on {samples} sentences", flush=True)
        stages = [{"kind": "finetune.qat", "epochs": epochs, "data": "calibration", "batch": 16,
                   "distill": {"weight": 1.0, "loss": "cosine"}}, {"kind": "export.onnx"}, q]
        qat, qat_s = _run(tmp, _recipe(f"minilm-qat-{i}", model, data, stages, "cosine_fidelity"))
        fp32_mb = next(a["bytes"] for a in ptq["artifacts"] if a["name"] == "fp32") / 1e6
        for how, m, secs in (("RTN", ptq, ptq_s), ("QAT", qat, qat_s)):
            x = m["metrics"][q["name"]]["onnxruntime"]
            mb = next(a["bytes"] for a in m["artifacts"] if a["name"] == q["name"]) / 1e6
            found[f"{label}/{how}"] = {**x, "mb": mb, "build_s": secs}
            rows.append([label, how, x["value"], mb, f"{mb / fp32_mb:.2f}x", round(secs, 1)])
        found[f"{label}/QAT"]["record"] = _qat_record(qat)
    best = max(found[f"{label}/QAT"]["value"] for label in MINILM_SCHEMES)
    targets = [["MiniLM INT4: fidelity with QAT (best scheme)", f"{best:.4f}", ">= 0.99",
                "met" if best >= 0.99 else "not met"]]
    tables = [table(f"all-MiniLM-L6-v2 INT4 (MatMulNBits) on {local_class()}: fidelity = mean cosine of the sentence "
                    f"embedding vs PyTorch fp32 on the held-out sentences; QAT: {epochs} epochs, {samples} training "
                    "sentences, cosine distillation from fp32",
                    ["scheme", "method", "fidelity", "size MB", "size vs fp32", "build s"], rows),
              table("Targets (MiniLM)", ["target", "measured", "goal", "status"], targets)]
    return tables, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vit-epochs", type=int, default=5)
    ap.add_argument("--vit-lr", type=float, default=1e-4, help="the digits ViT, trained from scratch on 1,257 "
                                                                "images, takes a larger step than MiniLM")
    ap.add_argument("--minilm-epochs", type=int, default=3)
    ap.add_argument("--minilm-samples", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-minilm", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-encoder-qat-") as tmp:
        tables, found = vit(Path(tmp), args.vit_epochs, args.vit_lr, args.rounds)
        if not args.skip_minilm:
            more, found_m = minilm(Path(tmp), args.minilm_epochs, args.minilm_samples)
            tables += more
            found.update(found_m)
    print_tables(tables)
    save("encoder_qat", tables, {"found": found, "settings": vars(args)})


if __name__ == "__main__":
    main()
