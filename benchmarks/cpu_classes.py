"""INT8 schemes x models x CPU classes: where each scheme keeps its accuracy and what it costs.

For each model (digits CNN, digits ViT, all-MiniLM-L6-v2) one edgekit recipe exports the float
graph once and quantizes it with `quantize.int8` five ways:

    u8s8       full-range int8 weights, uint8 activations, no overflow fix (ONNX Runtime's QDQ U8S8)
    u8s8_7bit  the same with 7-bit weights (overflow_fix: reduce_range)
    u8s8_rt    full-range weights + ONNX Runtime session.x64quantprecision=1 (overflow_fix: runtime)
    u8u8       uint8 weights
    s8s8       int8 activations and weights (ONNX Runtime's default), no overflow fix

and, for OpenVINO, with `target.openvino` (NNCF INT8) two ways: NNCF's overflow fix on every
layer (ov_fix_all) or on the first layer only (ov_fix_first, NNCF's default).

edgekit's own pipeline then verifies every artifact on ONNX Runtime natively and under QEMU for
each emulated class (x86-avx2 = qemu Haswell, x86-sse = qemu Nehalem), OpenVINO artifacts on
OpenVINO; the accuracy (top-1, or
cosine fidelity for MiniLM) comes from the manifest's `verified_on` records. Native speed vs the
fp32 ONNX is timed afterwards, all variants interleaved in rounds (median of per-round medians).

    .venv/bin/python -m benchmarks.cpu_classes [--models cnn vit minilm] [--classes x86-avx2 x86-sse]
                                               [--runtimes onnxruntime openvino]
                                                [--emulated-samples 200] [--rounds 5]

Prints the table and writes benchmarks/results/<cpu-class>/cpu_classes.json (benchmarks/_results.py);
model/runtime pairs not run this time are kept from this CPU class's last run."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit.runtimes.cpu_classes import local_class  # noqa: E402
from edgekit.pipeline import run  # noqa: E402
from edgekit.profile.interleave import Rounds, Sessions, time_rounds  # noqa: E402
from edgekit.recipe import load_recipe  # noqa: E402
from edgekit.runtimes import open_runner  # noqa: E402

from benchmarks._results import command, previous, save, table  # noqa: E402

SCHEMES: dict[str, dict[str, Any]] = {
    "u8s8": {"overflow_fix": "none"},
    "u8s8_7bit": {"overflow_fix": "reduce_range"},
    "u8s8_rt": {"overflow_fix": "runtime"},
    "u8u8": {"weights": {"dtype": "uint8", "symmetric": False}},
    "s8s8": {"overflow_fix": "none", "activations": {"dtype": "int8", "symmetric": True}},
}
MODELS = {
    "cnn": {"model": {"python": "edgekit.models.zoo:digits_cnn"}, "inputs": [{"name": "x", "shape": [1, 1, 32, 32]}],
            "data": {"calibration": {"builtin": "digits", "samples": 256}, "evaluation": {"builtin": "digits"}},
            "metric": "top1", "calibration": "percentile"},
    "vit": {"model": {"python": "edgekit.models.zoo:digits_vit"}, "inputs": [{"name": "x", "shape": [1, 1, 32, 32]}],
            "data": {"calibration": {"builtin": "digits", "samples": 256}, "evaluation": {"builtin": "digits"}},
            "metric": "top1", "calibration": "percentile"},
    "minilm": {"model": {"python": "edgekit.models.zoo:minilm"},
               "data": {"calibration": {"builtin": "sentences", "samples": 64},
                        "evaluation": {"builtin": "sentences", "samples": 128}},
               "metric": "cosine_fidelity", "calibration": "percentile"},
}


# OpenVINO + NNCF INT8 (target.openvino) with NNCF's overflow fix on every layer or the first only
OV_SCHEMES = {"ov_fix_all": "enable", "ov_fix_first": "first_layer"}


def recipe(model: str, classes: list[str], emulated_samples: int, runtime: str) -> dict[str, Any]:
    m = MODELS[model]
    stages: list[dict[str, Any]] = [{"kind": "export.onnx", "opset": 17}]
    if runtime == "openvino":
        stages += [{"kind": "target.openvino", "name": name, "precision": "int8", "overflow_fix": fix}
                   for name, fix in OV_SCHEMES.items()]
    for name, settings in SCHEMES.items() if runtime == "onnxruntime" else ():
        stage = {"kind": "quantize.int8", "name": name,
                 "activations": {"calibration": m["calibration"], "percentile": 99.999}}
        for key, value in settings.items():
            stage[key] = {**stage.get(key, {}), **value} if isinstance(value, dict) else value
        stages.append(stage)
    data = {"edgekit": 1, "name": f"cpu-classes-{model}-{runtime}", "model": m["model"], "data": m["data"],
            "stages": stages, "targets": [runtime],
            # every scheme is kept and measured, the saturating ones included: record, don't refuse
            "deploy": {"cpus": list(dict.fromkeys([local_class(), *classes])), "accept_saturation": True},
            "verify": {"cosine_min": 0.01, "samples": 10_000, "emulate_samples": emulated_samples},
            "accuracy": {"metric": m["metric"]}, "profile": {"enabled": False}}
    if "inputs" in m:
        data["inputs"] = m["inputs"]
    return data


def speeds(out_dir: Path, manifest: dict[str, Any], feeds: dict[str, np.ndarray], rounds: int,
           runtime: str) -> dict[str, float]:
    """fp32 time / variant time on the runtime here, interleaved: each round times every
    variant for a short block, each opened afresh (edgekit.profile.interleave), so machine
    noise and a session's own speed hit all of them alike."""
    arts = manifest["artifacts"]
    timing = Rounds(rounds, 0.5, block_iters=20, warmup_s=0.2, rewarm_s=0.2, max_block_s=5.0)
    openers = [lambda a=a: open_runner(runtime, out_dir / a["path"], 2, **(a.get("runtime_options") or {}).get(runtime, {}))
               for a in arts]
    with Sessions(openers) as sessions:
        per_round = time_rounds([lambda i=i: sessions.runner(i).run(feeds) for i in range(len(arts))], timing,
                                fresh=sessions.open)
    medians = {a["name"]: [float(np.median(x)) for x in per_round[i]] for i, a in enumerate(arts)}
    fp32 = float(np.median(medians["fp32"]))
    return {k: fp32 / float(np.median(v)) for k, v in medians.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--classes", nargs="+", default=["x86-avx2", "x86-sse"])
    ap.add_argument("--emulated-samples", type=int, default=200)
    ap.add_argument("--minilm-emulated-samples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"], choices=["onnxruntime", "openvino"])
    args = ap.parse_args()
    native = local_class()
    results: dict[str, Any] = {"native_class": native, "models": {}}
    with tempfile.TemporaryDirectory(prefix="edgekit-cpu-classes-") as d:
        for model, runtime in [(m, r) for m in args.models for r in args.runtimes]:
            n_emu = args.minilm_emulated_samples if model == "minilm" else args.emulated_samples
            path = Path(d) / f"{model}-{runtime}.yaml"
            path.write_text(yaml.safe_dump(recipe(model, args.classes, n_emu, runtime), sort_keys=False))
            res = run(load_recipe(path), Path(d) / "out")
            m = res.manifest
            with np.load(res.out_dir / "reference.npz") as z:
                feeds = {k[len("input."):]: z[k][:1] for k in z.files if k.startswith("input.")}
            speed = speeds(res.out_dir, m, feeds, args.rounds, runtime)
            per: dict[str, Any] = {"not_verified": m["deploy"]["not_verified"], "schemes": {}}
            for a in m["artifacts"]:
                entry: dict[str, Any] = {"speed_vs_fp32": speed[a["name"]], "classes": {}}
                for v in a["verified_on"]:
                    entry["classes"][f"{v['cpu_class']} ({v['mode']})"] = {
                        "value": v.get("value"), "reference": v.get("reference"), "samples": v.get("metric_samples"),
                        "cosine_mean": v["cosine_mean"]}
                per["schemes"][a["name"]] = entry
                stage = next((s for s in m["stages"] if a["name"] in s["outputs"]), None)
                if stage is not None:
                    entry["weight_bits"] = stage["measured"].get("weight_bits")
                    entry["scheme"] = stage["measured"].get("scheme")
            results["models"][f"{model}/{runtime}"] = per
            print(f"{model} on {runtime}: not verified: {per['not_verified'] or 'none'}", flush=True)
    # pairs not run this time keep their rows (and settings) from this class's last run
    last = previous("cpu_classes") or {}
    merged = dict(last.get("models", {}))
    run_with = dict(last.get("run_with", {}))
    for key in results["models"]:
        run_with[key] = {"command": command("cpu_classes"), "emulated_samples": args.emulated_samples,
                         "minilm_emulated_samples": args.minilm_emulated_samples, "rounds": args.rounds}
    results_now = set(results["models"])
    merged.update(results["models"])
    results.update(models=merged, run_with=run_with)
    rows = []
    for key, per in merged.items():
        model, runtime = key.split("/")
        for name, entry in per["schemes"].items():
            for cls, c in entry["classes"].items():
                rows.append((model, runtime, name, cls, c["value"], c["reference"], c["samples"], c["cosine_mean"],
                             entry["speed_vs_fp32"]))
    title = (f"INT8 schemes x CPU classes (native class {native}; speed = the runtime's fp32 time / variant time, "
             "native, interleaved)")
    print(f"\n{title}\n")
    print("| model | runtime | scheme | class | metric | reference | samples | cosine vs fp32 | native speed vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = (lambda v: "–" if v is None else f"{v:.4f}")  # noqa: E731
    shown = []
    for model, runtime, scheme, cls, value, ref, n, cos, sp in rows:
        shown.append([model, runtime, scheme, cls, fmt(value), fmt(ref), str(n), f"{cos:.4f}", f"{sp:.2f}x"])
        print("| " + " | ".join(shown[-1]) + " |")
    settings = "; ".join(f"{k}: {v['rounds']} timing rounds of 0.5 s, 2 threads, emulated samples "
                         f"{v['minilm_emulated_samples'] if k.startswith('minilm') else v['emulated_samples']}"
                         + ("" if k in results_now else f" (earlier run: {v['command']})")
                         for k, v in run_with.items() if k in merged)
    save("cpu_classes", [table(title, ["model", "runtime", "scheme", "class", "metric", "reference", "samples",
                                       "cosine vs fp32", "native speed vs fp32"], shown,
                               "metric = top-1 (cnn, vit) or mean cosine fidelity (minilm) on each class, natively or "
                               f"under QEMU (x86-avx2 = Haswell, x86-sse = Nehalem); {settings}.")], results)


if __name__ == "__main__":
    main()
