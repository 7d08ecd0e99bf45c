"""Token reduction, measured: exported ONNX graphs of reduced vs unreduced models, timed on ONNX
Runtime and OpenVINO in the same run (batch 1, 2 threads, interleaved rounds), with parity to
PyTorch and the task metric on real data.

    .venv/bin/python -m benchmarks.tokens [--only vit_small,digits,digits_seg,minilm,int8] [--seconds 1.0]

Prints one table per section and writes benchmarks/results/<cpu-class>/tokens.json
(benchmarks/_results.py); with --only, the other sections are kept from this CPU class's last run."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

from edgekit.export.onnx import ExportOnnx, ExportOnnxConfig
from edgekit.profile.interleave import Rounds, Sessions, time_rounds
from edgekit.runtimes import open_runner
from edgekit.stages.state import Dataset, ModelState

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import command, previous, save, table  # noqa: E402

THREADS = 2
ROUNDS = 3  # time_all's interleaved rounds
TABLES: list[dict[str, Any]] = []  # every table print_table printed in this process, in order


def export(model: Any, example: dict[str, np.ndarray], extra: list[dict[str, np.ndarray]], workdir: Path,
           name: str) -> tuple[Path, float]:
    """Through edgekit's own export stage: TorchScript exporter, opset 17, onnxslim, and its
    parity check against PyTorch (relative max error, raises past 1e-4)."""
    state = ModelState(torch_model=model, input_names=list(example), output_names=["output"], example=example,
                       workdir=workdir, calibration=Dataset("bench", extra))
    state, record = ExportOnnx().run(state, ExportOnnxConfig(kind="export.onnx", name=name))
    return state.onnx_path, record.measured["parity_max_rel_err"]


def time_all(paths: dict[str, Path], runtime: str, feeds: dict[str, np.ndarray], seconds: float,
             rounds: int = 3, feeds_for: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Median ms per variant (all samples); variants are interleaved over `rounds`, each opened
    afresh every round (edgekit.profile.interleave), so that load from other processes on the
    shared machine, and a session's own speed, fall on all of them alike."""
    feeds_for = feeds_for or {}
    names = list(paths)
    timing = Rounds(rounds, seconds, block_iters=10, warmup_s=0.2, rewarm_s=0.2, max_block_s=4 * seconds)
    with Sessions([lambda p=paths[k]: open_runner(runtime, p, THREADS) for k in names]) as sessions:
        per_round = time_rounds([lambda i=i, f=feeds_for.get(k, feeds): sessions.runner(i).run(f)
                                 for i, k in enumerate(names)], timing, fresh=sessions.open)
    return {k: float(np.median(np.concatenate(per_round[i]))) for i, k in enumerate(names)}


def print_table(title: str, header: list[str], rows: list[list[Any]], notes: str = "") -> dict[str, Any]:
    """Prints a Markdown table (floats to 4 significant digits) and records it in TABLES."""
    shown = table(title, header, [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows],
                  notes)
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in shown["rows"]:
        print("| " + " | ".join(row) + " |")
    if notes:
        print(f"\n{notes}")
    TABLES.append(shown)
    return shown


def flops_ratio(n0: int, removed: list[int], dim: int, hidden: int) -> float:
    from edgekit.tokens.plan import layer_report

    rows = layer_report(n0, removed, dim, hidden)
    return sum(r["flops_before"] for r in rows) / sum(r["flops_after"] for r in rows)


# ------------------------------------------------------------------------------------------


VIT_S_VARIANTS = {
    # name: (method, removed per block)
    "none": ("merge", [0] * 12),
    "tome r=16 every block": ("merge", [16] * 11 + [10]),  # 197 -> 11 tokens
    "merge at 3 blocks (64/48/32)": ("merge", [0, 64, 0, 0, 48, 0, 0, 32, 0, 0, 0, 0]),
    "prune at 3 blocks (64/48/32)": ("prune", [0, 64, 0, 0, 48, 0, 0, 32, 0, 0, 0, 0]),
}


def vit_small(tmp: Path, seconds: float) -> dict[str, Any]:
    import torch

    from edgekit.models.vit import vit_small_shape
    from edgekit.tokens.vit import ReducedViT

    base = vit_small_shape()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(3)]
    paths, info = {}, {}
    for name, (method, removed) in VIT_S_VARIANTS.items():
        model = base if not any(removed) else ReducedViT(base, removed, method)
        path, parity = export(model, feeds[0], feeds[1:], tmp, f"vits{len(paths)}")
        with torch.no_grad():
            ref = base(torch.from_numpy(feeds[0]["x"])).numpy()
            got = model(torch.from_numpy(feeds[0]["x"])).numpy()
        cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
        paths[name] = path
        info[name] = {"method": method, "removed": removed, "parity_rel": parity,
                      "final_tokens": 197 - sum(removed), "flops_ratio": flops_ratio(197, removed, 384, 1536),
                      "cosine_vs_unreduced_random_weights": cos}
    for rt in ("onnxruntime", "openvino"):
        ms = time_all(paths, rt, feeds[0], seconds)
        for name in paths:
            info[name][f"{rt}_ms"] = ms[name]
            info[name][f"{rt}_speedup"] = ms["none"] / ms[name]
    print_table("ViT-S shape (197 tokens, 384 wide, 12 blocks, 6 heads), batch 1, 2 threads",
                ["variant", "final tokens", "block FLOPs ratio", "ORT ms", "ORT speedup", "OV ms", "OV speedup",
                 "ONNX vs torch rel err"],
                [[k, v["final_tokens"], v["flops_ratio"], v["onnxruntime_ms"], v["onnxruntime_speedup"],
                  v["openvino_ms"], v["openvino_speedup"], v["parity_rel"]] for k, v in info.items()])
    return info


def digits(tmp: Path, seconds: float) -> dict[str, Any]:
    import copy

    import torch

    from edgekit.data.digits import split
    from edgekit.models.zoo import digits_vit
    from edgekit.tokens.stages import FinetuneConfig, finetune
    from edgekit.tokens.vit import ReducedViT

    base = digits_vit().module
    x, y, _ = split()["test"]
    xt = torch.from_numpy(x)
    xtrain = split()["train"][0]
    train = [{"x": xtrain[i : i + 1]} for i in range(len(xtrain))]
    with torch.no_grad():
        ref_top1 = float((base(xt).argmax(1).numpy() == y).mean())
        teacher = [base(torch.from_numpy(f["x"])) for f in train]
    out: dict[str, Any] = {}
    for name, method, removed, epochs in [("merge r=9 per block", "merge", [9] * 4, 0),
                                          ("prune r=9 per block", "prune", [9] * 4, 0),
                                          ("prune r=9 per block + 3-epoch distillation", "prune", [9] * 4, 3)]:
        model = ReducedViT(copy.deepcopy(base) if epochs else base, removed, method)
        if epochs:  # the stage's own `finetune:` option, on the train split (test never seen)
            finetune(model, train, FinetuneConfig(epochs=epochs, lr=5e-4), teacher)
        with torch.no_grad():
            top1 = float((model(xt).argmax(1).numpy() == y).mean())
        out[name] = {"top1": top1, "reference_top1": ref_top1, "drop_points": 100 * (ref_top1 - top1),
                     "tokens": [65 - sum(removed[: i + 1]) for i in range(4)],
                     "removed_before_last_block": sum(removed[:-1]) / 65,
                     "removed_after_last_block": sum(removed) / 65, "finetune_epochs": epochs,
                     "flops_ratio": flops_ratio(65, removed, 64, 128)}
    print_table(f"digits ViT (65 tokens, 4 blocks), test split n={len(y)}",
                ["variant", "tokens after each block", "removed entering / after last block", "top-1", "reference",
                 "drop (points)"],
                [[k, v["tokens"], f"{v['removed_before_last_block']:.0%} / {v['removed_after_last_block']:.0%}",
                  v["top1"], v["reference_top1"], v["drop_points"]] for k, v in out.items()])
    return out


def digits_seg(tmp: Path, seconds: float) -> dict[str, Any]:
    """Dense head: per-patch digit/background on the test split, every variant restored to the
    full 8x8 grid before the head; the peer is the same model unreduced, in the same run."""
    import torch

    from edgekit.data.digits import BACKGROUND, split, token_labels
    from edgekit.checks.metrics import token_top1
    from edgekit.models.zoo import digits_vit_seg
    from edgekit.tokens.vit import ReducedViT

    base = digits_vit_seg().module
    x, _, ids = split()["test"]
    labels = token_labels(ids)
    ink = labels != BACKGROUND
    feeds = [{"x": x[i : i + 1]} for i in range(3)]
    paths, out = {}, {}
    for name, method, removed in [("none", "merge", [0] * 4), ("merge r=9 + restore", "merge", [9] * 4),
                                  ("merge r=12 + restore", "merge", [12] * 4),
                                  ("prune r=9 + restore", "prune", [9] * 4)]:
        model = base if not any(removed) else ReducedViT(base, removed, method)
        with torch.no_grad():
            pred = model(torch.from_numpy(x)).numpy()
        paths[name], parity = export(model, feeds[0], feeds[1:], tmp, f"seg{len(paths)}")
        out[name] = {"token_top1": token_top1(pred, labels),
                     "ink_token_top1": float((pred.argmax(-1) == labels)[ink].mean()),
                     "output_shape": list(pred.shape[1:]), "tokens": [65 - sum(removed[: i + 1]) for i in range(4)],
                     "flops_ratio": flops_ratio(65, removed, 64, 128), "parity_rel": parity}
    ms = time_all(paths, "onnxruntime", feeds[0], seconds)
    for name, v in out.items():
        v.update(drop_points=100 * (out["none"]["token_top1"] - v["token_top1"]), ort_ms=ms[name],
                 ort_speedup=ms["none"] / ms[name])
    print_table(f"digits ViT with a per-patch head (64 patches x 11 classes), test split n={len(ids)}; "
                "ONNX Runtime, batch 1, 2 threads",
                ["variant", "tokens after each block", "output", "per-token top-1", "on ink patches",
                 "drop (points)", "ORT ms", "ORT speedup", "ONNX vs torch rel err"],
                [[k, v["tokens"], v["output_shape"], v["token_top1"], v["ink_token_top1"], v["drop_points"],
                  v["ort_ms"], v["ort_speedup"], v["parity_rel"]] for k, v in out.items()])
    return out


MINILM_MERGE = [48, 32, 16, 0, 0, 0]  # 128 -> 80 -> 48 -> 32 tokens; padding goes first
BUCKETS = [32, 64, 128]


def minilm(tmp: Path, seconds: float) -> dict[str, Any]:
    import torch

    from edgekit.data.sentences import split
    from edgekit.checks.metrics import cosine_per_sample
    from edgekit.sources.hf import minilm_dir, tokenizer_for
    from edgekit.models.zoo import minilm as load
    from edgekit.tokens.bert import ReducedBert, bucket_for, to_bucket

    base = load(128).module
    tok = tokenizer_for(minilm_dir())
    feeds = [{k: v.astype(np.int64) for k, v in tok(t, padding="max_length", truncation=True, max_length=128,
                                                      return_tensors="np").items() if k in ("input_ids", "attention_mask")}
             for t in split("test")]
    lengths = np.array([int(f["attention_mask"].sum()) for f in feeds])
    with torch.no_grad():
        ref = np.concatenate([base(*[torch.from_numpy(v) for v in f.values()]).numpy() for f in feeds])
    merged = ReducedBert(base, MINILM_MERGE, "merge")
    paths: dict[str, Path] = {}
    paths["seq 128"], _ = export(base, feeds[0], feeds[1:3], tmp, "mini0")
    paths["merge 48/32/16"], parity = export(merged, feeds[0], feeds[1:3], tmp, "mini1")
    bucket_feeds = {}
    for b in BUCKETS[:-1]:
        bucketed = [to_bucket(f, b) for f in feeds if int(f["attention_mask"].sum()) <= b]
        paths[f"bucket {b}"], _ = export(base, bucketed[0], bucketed[1:3], tmp, f"mini_b{b}")
        bucket_feeds[f"bucket {b}"] = bucketed[0]
    ort_outs = {}
    for name in ("seq 128", "merge 48/32/16"):
        runner = open_runner("onnxruntime", paths[name], THREADS)
        ort_outs[name] = np.concatenate([runner.run(f)[0] for f in feeds])
        runner.close()
    ms = time_all(paths, "onnxruntime", feeds[0], seconds, feeds_for=bucket_feeds)
    ov_ms = time_all({k: paths[k] for k in ("seq 128", "merge 48/32/16")}, "openvino", feeds[0], seconds)
    # bucketing: each sentence runs on the shortest bucket that holds it; the mean latency over
    # the test set weights each bucket's measured time by how many sentences land in it
    chosen = bucket_for(lengths, BUCKETS)
    bucket_ms = {128: ms["seq 128"], **{b: ms[f"bucket {b}"] for b in BUCKETS[:-1]}}
    mean_bucket_ms = float(np.mean([bucket_ms[int(b)] for b in chosen]))
    runners = {b: open_runner("onnxruntime", paths[f"bucket {b}"], THREADS) for b in BUCKETS[:-1]}
    bucket_out = np.concatenate([
        (runners[int(b)].run(to_bucket(f, int(b)))[0] if int(b) in runners else ort_outs["seq 128"][i:i + 1])
        for i, (f, b) in enumerate(zip(feeds, chosen))])
    info = {
        "sentences": len(feeds), "length_median": float(np.median(lengths)), "length_max": int(lengths.max()),
        "seq 128": {"ms": ms["seq 128"], "speedup": 1.0,
                    "fidelity": float(cosine_per_sample(ref, ort_outs["seq 128"]).mean())},
        "merge 48/32/16": {"ms": ms["merge 48/32/16"], "speedup": ms["seq 128"] / ms["merge 48/32/16"],
                           "fidelity": float(cosine_per_sample(ref, ort_outs["merge 48/32/16"]).mean()),
                           "fidelity_worst": float(cosine_per_sample(ref, ort_outs["merge 48/32/16"]).min()),
                           "parity_rel": parity, "removed": MINILM_MERGE,
                           "openvino_ms": ov_ms["merge 48/32/16"], "openvino_seq128_ms": ov_ms["seq 128"],
                           "openvino_speedup": ov_ms["seq 128"] / ov_ms["merge 48/32/16"]},
        "length buckets 32/64/128": {"ms": mean_bucket_ms, "speedup": ms["seq 128"] / mean_bucket_ms,
                                     "fidelity": float(cosine_per_sample(ref, bucket_out).mean()),
                                     "bucket_counts": {int(b): int((chosen == b).sum()) for b in BUCKETS},
                                     "bucket_ms": bucket_ms},
    }
    m = info["merge 48/32/16"]
    print_table(f"all-MiniLM-L6-v2 at sequence 128, {len(feeds)} test sentences (median {np.median(lengths):.0f} "
                "tokens), ONNX Runtime, batch 1, 2 threads; fidelity = mean cosine to PyTorch fp32",
                ["variant", "ms (mean per sentence)", "speedup", "fidelity"],
                [[k, v["ms"], v["speedup"], v["fidelity"]] for k, v in info.items() if isinstance(v, dict)],
                f"OpenVINO: seq 128 {m['openvino_seq128_ms']:.4g} ms, merge 48/32/16 {m['openvino_ms']:.4g} ms "
                f"({m['openvino_speedup']:.3g}x)")
    return info


def int8(tmp: Path, seconds: float) -> dict[str, Any]:
    import torch

    from edgekit.checks.metrics import cosine_per_sample
    from edgekit.models.vit import vit_small_shape
    from edgekit.quantize.static_int8 import StaticInt8, StaticInt8Config
    from edgekit.tokens.vit import ReducedViT

    base = vit_small_shape()
    removed = VIT_S_VARIANTS["merge at 3 blocks (64/48/32)"][1]
    rng = np.random.default_rng(1)
    calib = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(16)]
    held = [{"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(8)]
    with torch.no_grad():
        ref = np.concatenate([base(torch.from_numpy(f["x"])).numpy() for f in held])
    paths: dict[str, Path] = {}
    for tag, model in (("fp32", base), ("fp32 + merge", ReducedViT(base, removed, "merge"))):
        path, _ = export(model, held[0], held[1:2], tmp, f"q{len(paths)}")
        paths[tag] = path
        state = ModelState(torch_model=None, input_names=["x"], output_names=["output"], example=held[0],
                           workdir=tmp, onnx_path=path, calibration=Dataset("random normal", calib))
        name = tag.replace("fp32", "int8").replace(" + ", "_")
        state, _ = StaticInt8().run(state, StaticInt8Config(kind="quantize.int8", name=name,
                                                             op_types=["MatMul", "Gemm"]))
        paths[tag.replace("fp32", "int8")] = state.artifacts[-1].path
    info: dict[str, Any] = {}
    for name, path in paths.items():
        runner = open_runner("onnxruntime", path, THREADS)
        out = np.concatenate([runner.run(f)[0] for f in held])
        runner.close()
        info[name] = {"cosine_vs_torch_fp32": float(cosine_per_sample(ref, out).mean())}
    ms = time_all(paths, "onnxruntime", held[0], seconds)
    for name in paths:
        info[name].update(ms=ms[name], speedup=ms["fp32"] / ms[name])
    print_table("ToMe + INT8 on the ViT-S shape, ONNX Runtime, static INT8 U8S8 QDQ on MatMul/Gemm only, "
                "calibrated on 16 random-normal images; cosine vs PyTorch fp32 (unreduced) on 8 others",
                ["variant", "ms", "speedup", "cosine"],
                [[k, v["ms"], v["speedup"], v["cosine_vs_torch_fp32"]] for k, v in info.items()])
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="vit_small,digits,digits_seg,minilm,int8")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per variant per round")
    args = ap.parse_args()
    sections = {"vit_small": vit_small, "digits": digits, "digits_seg": digits_seg, "minilm": minilm, "int8": int8}
    # sections run with --only update their entry and keep the others' last results (and tables)
    results: dict[str, Any] = previous("tokens") or {}
    results.update(threads=THREADS, batch=1)
    by_section: dict[str, list[dict[str, Any]]] = results.setdefault("section_tables", {})
    unknown = [n for n in args.only.split(",") if n not in sections]
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {unknown}; allowed: {', '.join(sections)}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            first = len(TABLES)
            results[name] = sections[name](Path(tmp), args.seconds)
            for t in TABLES[first:]:
                if " ms" in " ".join(t["headers"]) or "ms" in t["headers"]:
                    t["notes"] = (t["notes"] + " " if t["notes"] else "") + (
                        f"Timed in {ROUNDS} interleaved rounds of {args.seconds} s per variant, each opened afresh.")
            by_section[name] = TABLES[first:]
    ran = set(args.only.split(","))
    tables = []
    for name in sections:
        for t in by_section.get(name, []):
            if name not in ran and "Kept from an earlier run" not in t["notes"]:
                t = {**t, "notes": (t["notes"] + " " if t["notes"] else "") +
                     f"Kept from an earlier run (not the command above: {results.get('commands', {}).get(name, '?')})."}
            tables.append(t)
    results.setdefault("commands", {}).update({name: command("tokens") for name in ran})
    save("tokens", tables, results)


if __name__ == "__main__":
    main()
