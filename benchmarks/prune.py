"""Pruning, measured: exported ONNX graphs of pruned vs unpruned models, timed on ONNX Runtime
and OpenVINO in the same run (batch 1, 2 threads, interleaved rounds), with accuracy on the
digits test split and fidelity on real sentences.

    .venv/bin/python -m benchmarks.prune [--only resnet18,digits_cnn,digits_vit,vit_small,hf_vit,minilm,nm,compose] [--seconds 1.0]

Prints one table per section and writes benchmarks/results/<cpu-class>/prune.json
(benchmarks/_results.py; the sections of this run only). Targets (issue 10):
ResNet-18 shape, 50% channels removed globally -> >= 2x on both runtimes; digits CNN 50% +
finetune -> top-1 drop <= 1 point, params <= 0.3x; digits ViT 50% heads+FFN + finetune ->
drop <= 1 point, ViT-S shape >= 1.5x; MiniLM depth: fidelity/latency for 1-4 sublayers and one
block (>= 0.95 and >= 1.15x at one block)."""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import save  # noqa: E402
from benchmarks.tokens import ROUNDS, TABLES, export, print_table, time_all  # noqa: E402
from edgekit.prune import common  # noqa: E402


def cpu_class() -> str:
    """x86-amx | x86-vnni | x86-avx2 | x86-sse | arm64, from the CPU flags (docs/cpu-classes.md)."""
    import platform

    if platform.machine() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    for flag, name in (("amx_int8", "x86-amx"), ("avx512_vnni", "x86-vnni"), ("avx2", "x86-avx2")):
        if flag in flags:
            return name
    return "x86-sse"


def structured(model: Any, example: dict[str, np.ndarray], **kw: Any) -> tuple[Any, dict[str, Any]]:
    from edgekit.prune.structured import StructuredConfig, prune_structured

    pruned = copy.deepcopy(model)
    before = common.snapshot(pruned, example)
    state = None
    if kw.get("importance") in ("taylor", "hessian"):  # gradient scores on 128 digits training images
        from edgekit.data.digits import split
        from edgekit.stages.state import Dataset, ModelState

        x, y, _ = split()["train"]
        state = ModelState(pruned, ["x"], ["logits"], example, Path(tempfile.gettempdir()),
                           calibration=Dataset("digits/train", [{"x": x[i : i + 1]} for i in range(128)], y[:128]))
    prune_structured(pruned, StructuredConfig(kind="prune.structured", **{"samples": 128, **kw}), example, state)
    return pruned.eval(), common.summary(None, pruned, example, before)


def finetune(model: Any, teacher: Any, epochs: int, lr: float) -> list[float]:
    from edgekit.finetune.stage import TrainSpec, train, training_data

    spec = TrainSpec(epochs=epochs, lr=lr, data="digits", distill={"weight": 0.5, "temperature": 2.0})

    class _S:  # training_data reads only the example
        example = {"x": np.zeros((1, 1, 32, 32), np.float32)}

    inputs, targets = training_data(spec, _S())  # type: ignore[arg-type]
    return train(model, inputs, targets, spec, teacher)


def top1_onnx(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from edgekit.runtimes import open_runner

    r = open_runner("onnxruntime", path, 2)
    pred = np.concatenate([np.asarray(r.run({"x": x[i : i + 1]})[0]) for i in range(len(x))]).argmax(1)
    r.close()
    return float((pred == y).mean())


def speed(paths: dict[str, Path], feeds: dict[str, np.ndarray], seconds: float, base: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {k: {} for k in paths}
    for rt in ("onnxruntime", "openvino"):
        ms = time_all(paths, rt, feeds, seconds)
        for k in paths:
            out[k][f"{rt}_ms"] = ms[k]
            out[k][f"{rt}_speedup"] = ms[base] / ms[k]
    return out


def resnet18(tmp: Path, seconds: float) -> dict[str, Any]:
    from edgekit.models.resnet import resnet18_shape

    base = resnet18_shape()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(3)]
    variants = {"unpruned": (base, None)}
    for name, kw in [("50% global, l2", dict(ratio=0.5, scope="global", round_to=8)),
                     ("50% uniform, l2", dict(ratio=0.5, scope="uniform", round_to=8))]:
        variants[name] = structured(base, feeds[0], **kw)
    paths, info = {}, {}
    for name, (model, summ) in variants.items():
        paths[name], parity = export(model, feeds[0], feeds[1:], tmp, f"r18_{len(paths)}")
        info[name] = {"parity_rel": parity}
        if summ:
            info[name].update(params_ratio=summ["ratio_after_over_before"]["params"],
                              macs_ratio=summ["ratio_after_over_before"]["macs"])
        else:
            info[name].update(params_ratio=1.0, macs_ratio=1.0)
    for k, v in speed(paths, feeds[0], seconds, "unpruned").items():
        info[k].update(v)
    print_table("ResNet-18 shape (224 px, random weights), batch 1, 2 threads",
                ["variant", "params ratio", "MACs ratio", "ORT ms", "ORT speedup", "OV ms", "OV speedup",
                 "ONNX vs torch rel err"],
                [[k, v["params_ratio"], v["macs_ratio"], v["onnxruntime_ms"], v["onnxruntime_speedup"],
                  v["openvino_ms"], v["openvino_speedup"], v["parity_rel"]] for k, v in info.items()])
    return info


def _digits_model(tmp: Path, name: str, base: Any, kw: dict[str, Any], epochs: int, lr: float) -> dict[str, Any]:
    from edgekit.data.digits import split

    x, y, _ = split()["test"]
    feeds = [{"x": x[i : i + 1]} for i in range(3)]
    ref_path, _ = export(base, feeds[0], feeds[1:], tmp, f"{name}_ref")
    ref = top1_onnx(ref_path, x, y)
    pruned, summ = structured(base, feeds[0], **kw)
    no_ft_path, _ = export(pruned, feeds[0], feeds[1:], tmp, f"{name}_noft")
    no_ft = top1_onnx(no_ft_path, x, y)
    losses = finetune(pruned, base, epochs, lr)
    path, parity = export(pruned, feeds[0], feeds[1:], tmp, f"{name}_pruned")
    top1 = top1_onnx(path, x, y)
    return {"reference_top1": ref, "pruned_no_finetune_top1": no_ft, "pruned_finetuned_top1": top1,
            "drop_points": 100 * (ref - top1), "params_ratio": summ["ratio_after_over_before"]["params"],
            "macs_ratio": summ["ratio_after_over_before"]["macs"], "finetune_epochs": epochs,
            "finetune_loss": losses, "parity_rel": parity, "test_samples": int(len(y)), "settings": kw}


def digits_cnn(tmp: Path, seconds: float) -> dict[str, Any]:
    from edgekit.models.zoo import digits_cnn as load

    out = {"50% channels, l2 uniform + 8 epochs distillation":
           _digits_model(tmp, "cnn", load().module, dict(ratio=0.5), 8, 2e-3)}
    _digits_table("digits CNN (ONNX Runtime top-1 on the test split)", out)
    return out


def digits_vit(tmp: Path, seconds: float) -> dict[str, Any]:
    from edgekit.models.zoo import digits_vit as load

    out = {"50% heads + 50% FFN, taylor + 15 epochs distillation":
           _digits_model(tmp, "vit", load().module, dict(ratio=0.5, head_ratio=0.5, importance="taylor"), 15, 2e-3)}
    _digits_table("digits ViT (ONNX Runtime top-1 on the test split)", out)
    return out


def _digits_table(title: str, out: dict[str, Any]) -> None:
    print_table(title, ["variant", "reference", "pruned", "pruned + finetune", "drop (points)", "params ratio",
                        "MACs ratio"],
                [[k, v["reference_top1"], v["pruned_no_finetune_top1"], v["pruned_finetuned_top1"],
                  v["drop_points"], v["params_ratio"], v["macs_ratio"]] for k, v in out.items()])


def vit_small(tmp: Path, seconds: float) -> dict[str, Any]:
    from edgekit.models.vit import vit_small_shape

    base = vit_small_shape()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(3)]
    pruned, summ = structured(base, feeds[0], ratio=0.5, head_ratio=0.5)
    paths = {}
    info: dict[str, Any] = {"unpruned": {"params_ratio": 1.0, "macs_ratio": 1.0},
                            "50% heads + FFN": {"params_ratio": summ["ratio_after_over_before"]["params"],
                                                "macs_ratio": summ["ratio_after_over_before"]["macs"]}}
    for name, model in (("unpruned", base), ("50% heads + FFN", pruned)):
        paths[name], info[name]["parity_rel"] = export(model, feeds[0], feeds[1:], tmp, f"vits_{len(paths)}")
    for k, v in speed(paths, feeds[0], seconds, "unpruned").items():
        info[k].update(v)
    _speed_table("ViT-S shape (edgekit layout, 6 heads, MLP 1536), batch 1, 2 threads", info)
    return info


def hf_vit(tmp: Path, seconds: float) -> dict[str, Any]:
    """A Hugging Face ViTForImageClassification directory in the ViT-S/16 shape built offline
    from a config (random weights), loaded as `model: {hf: DIR}` is."""
    import transformers

    from edgekit.sources.hf import load_hf

    cfg = transformers.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                 intermediate_size=1536, image_size=224, patch_size=16, num_labels=1000,
                                 architectures=["ViTForImageClassification"])
    d = tmp / "hf_vit_s"
    transformers.ViTForImageClassification(cfg).eval().save_pretrained(d)
    bundle = load_hf(str(d))
    rng = np.random.default_rng(0)
    feeds = [{"pixel_values": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(3)]
    pruned, summ = structured(bundle.module, feeds[0], ratio=0.5, head_ratio=0.5)
    info: dict[str, Any] = {"unpruned": {"params_ratio": 1.0, "macs_ratio": 1.0},
                            "50% heads + FFN": {"params_ratio": summ["ratio_after_over_before"]["params"],
                                                "macs_ratio": summ["ratio_after_over_before"]["macs"]}}
    paths = {}
    for name, model in (("unpruned", bundle.module), ("50% heads + FFN", pruned)):
        paths[name], info[name]["parity_rel"] = export(model, feeds[0], feeds[1:], tmp, f"hfvit_{len(paths)}")
    for k, v in speed(paths, feeds[0], seconds, "unpruned").items():
        info[k].update(v)
    _speed_table("Hugging Face ViT directory, ViT-S/16 shape (random weights), batch 1, 2 threads", info)
    return info


def _speed_table(title: str, info: dict[str, Any]) -> None:
    print_table(title, ["variant", "params ratio", "MACs ratio", "ORT ms", "ORT speedup", "OV ms", "OV speedup",
                        "ONNX vs torch rel err"],
                [[k, v["params_ratio"], v["macs_ratio"], v["onnxruntime_ms"], v["onnxruntime_speedup"],
                  v["openvino_ms"], v["openvino_speedup"], v["parity_rel"]] for k, v in info.items()])


def minilm(tmp: Path, seconds: float) -> dict[str, Any]:
    import torch

    from edgekit.sources.data import load_data
    from edgekit.models.zoo import minilm as load
    from edgekit.prune.depth import DepthConfig, PruneDepth
    from edgekit.recipe import DataSpec
    from edgekit.stages.state import ModelState

    bundle = load()
    info_m = dict(bundle.info)
    calib = load_data(DataSpec(builtin="sentences", split="train", samples=32), bundle.example, "calib", ROOT, info_m)
    test = load_data(DataSpec(builtin="sentences", split="test"), bundle.example, "eval", ROOT, info_m)

    def embed(model: Any) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(*common.torch_inputs(s)).numpy() for s in test.samples])

    ref = embed(bundle.module)
    variants: dict[str, Any] = {"unpruned": (bundle.module, None)}
    for name, kw in [("1 sublayer", dict(drop=1)), ("2 sublayers", dict(drop=2)), ("3 sublayers", dict(drop=3)),
                     ("4 sublayers", dict(drop=4)), ("1 block", dict(drop=1, unit="block"))]:
        state = ModelState(bundle.module, list(bundle.example), ["embedding"], bundle.example, tmp,
                           calibration=calib)
        state, rec = PruneDepth().apply(state, DepthConfig(kind="prune.depth", samples=32, **kw))
        variants[name] = (state.torch_model, rec.measured)
    paths, info = {}, {}
    for name, (model, measured) in variants.items():
        got = embed(model)
        cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
        paths[name], parity = export(model, test.samples[0], test.samples[1:3], tmp, f"minilm_{len(paths)}")
        info[name] = {"fidelity": float(cos.mean()), "parity_rel": parity,
                      "dropped": measured["dropped"] if measured else [],
                      "macs_ratio": measured["ratio_after_over_before"]["macs"] if measured else 1.0}
        if name == "1 sublayer":
            info["candidate_scores"] = measured["candidates"]
    scores = info.pop("candidate_scores")
    for k, v in speed(paths, test.samples[0], seconds, "unpruned").items():
        info[k].update(v)
    print_table(f"all-MiniLM-L6-v2, seq 128, fidelity = mean cosine to the unpruned embedding over "
                f"{len(test)} test sentences; batch 1, 2 threads",
                ["variant", "dropped", "fidelity", "MACs ratio", "ORT ms", "ORT speedup", "OV ms", "OV speedup"],
                [[k, ", ".join(v["dropped"]) or "-", v["fidelity"], v["macs_ratio"], v["onnxruntime_ms"],
                  v["onnxruntime_speedup"], v["openvino_ms"], v["openvino_speedup"]] for k, v in info.items()])
    info["candidate_scores"] = scores
    return info


def nm(tmp: Path, seconds: float) -> dict[str, Any]:
    """2:4 on the ResNet-18 shape: same shapes, half the weights zero; CPU runtimes run dense."""
    from edgekit.models.resnet import resnet18_shape
    from edgekit.prune.magnitude import NMConfig, PruneNM
    from edgekit.stages.state import ModelState

    base = resnet18_shape()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(3)]
    state = ModelState(base, ["x"], ["logits"], feeds[0], tmp)
    state, rec = PruneNM().apply(state, NMConfig(kind="prune.nm"))
    paths = {}
    info: dict[str, Any] = {"dense": {}, "2:4": {"nonzero_params_ratio": rec.measured["after"]["nonzero_params"]
                                                  / rec.measured["before"]["nonzero_params"]}}
    for name, model in (("dense", base), ("2:4", state.torch_model)):
        paths[name], info[name]["parity_rel"] = export(model, feeds[0], feeds[1:], tmp, f"nm_{len(paths)}")
    for k, v in speed(paths, feeds[0], seconds, "dense").items():
        info[k].update(v)
    print_table("ResNet-18 shape, 2:4 sparsity (zeros only), batch 1, 2 threads",
                ["variant", "ORT ms", "ORT speedup", "OV ms", "OV speedup"],
                [[k, v["onnxruntime_ms"], v["onnxruntime_speedup"], v["openvino_ms"], v["openvino_speedup"]]
                 for k, v in info.items()])
    return info


def int8(path: Path, calib: list[dict[str, np.ndarray]], tmp: Path, name: str) -> Path:
    """edgekit's quantize.int8 stage as recipes/int8_pc.yaml configures it (U8S8 QDQ, per-channel)."""
    from edgekit.quantize.static_int8 import StaticInt8, StaticInt8Config
    from edgekit.stages.state import Dataset, ModelState

    work = tmp / name
    work.mkdir()
    state = ModelState(None, list(calib[0]), ["logits"], calib[0], work, onnx_path=path,
                       calibration=Dataset("random", calib))
    cfg = StaticInt8Config(kind="quantize.int8", name=name, weights={"granularity": "per_channel"},
                           activations={"dtype": "uint8", "calibration": "percentile", "percentile": 99.999})
    state, _ = StaticInt8().run(state, cfg)
    return state.artifacts[-1].path


def compose(tmp: Path, seconds: float) -> dict[str, Any]:
    """Pruning and INT8 together on the ResNet-18 shape: is the pruned INT8 graph faster than
    either alone?"""
    from edgekit.models.resnet import resnet18_shape

    base = resnet18_shape()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(16)]
    pruned, _ = structured(base, feeds[0], ratio=0.5, scope="global", round_to=8)
    paths = {}
    paths["fp32"], _ = export(base, feeds[0], feeds[1:3], tmp, "c_fp32")
    paths["pruned fp32"], _ = export(pruned, feeds[0], feeds[1:3], tmp, "c_pruned")
    paths["int8"] = int8(paths["fp32"], feeds, tmp, "c_int8")
    paths["pruned + int8"] = int8(paths["pruned fp32"], feeds, tmp, "c_pruned_int8")
    info = speed(paths, feeds[0], seconds, "fp32")
    print_table("ResNet-18 shape: 50% channels (global) and static INT8 (U8S8 QDQ), batch 1, 2 threads",
                ["variant", "ORT ms", "ORT speedup", "OV ms", "OV speedup"],
                [[k, v["onnxruntime_ms"], v["onnxruntime_speedup"], v["openvino_ms"], v["openvino_speedup"]]
                 for k, v in info.items()])
    return info


SECTIONS = {"resnet18": resnet18, "digits_cnn": digits_cnn, "digits_vit": digits_vit, "vit_small": vit_small,
            "hf_vit": hf_vit, "minilm": minilm, "nm": nm, "compose": compose}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per variant per round (3 rounds)")
    args = ap.parse_args()
    import torch

    # torch only prunes, finetunes and exports here (timings are ONNX Runtime / OpenVINO at 2
    # threads); one torch thread avoids OpenMP spin-waiting on a shared, oversubscribed machine
    torch.set_num_threads(1)
    cpu = cpu_class()
    print(f"CPU class: {cpu}")
    results: dict[str, Any] = {"cpu_class": cpu, "threads": 2, "batch": 1}
    unknown = [n for n in args.only.split(",") if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {unknown}; allowed: {', '.join(SECTIONS)}")
    with tempfile.TemporaryDirectory() as d:
        for name in args.only.split(","):
            results[name] = SECTIONS[name](Path(d), args.seconds)
    for t in TABLES:
        if " ms" in " ".join(t["headers"]):
            t["notes"] = (t["notes"] + " " if t["notes"] else "") + (
                f"Timed in {ROUNDS} interleaved rounds of {args.seconds} s per variant, each opened afresh.")
    save("prune", TABLES, results)


if __name__ == "__main__":
    main()
