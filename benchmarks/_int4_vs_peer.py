"""What benchmarks.genai_vs_builder and benchmarks.ov_vs_optimum share: edgekit's INT4 folders of
SmolLM2-135M against one peer's default INT4 on the same runtime, held-out perplexity and decode
time paired over interleaved rounds, and a speed verdict that a tie cannot pass.

Speed: batch 1, 2 threads, prompt 128, 64 new tokens; each folder in a fresh process per round,
the order rotated every round; a ratio is the median over rounds of the two folders' ratio in the
same round. The peer's folder is timed twice under two names (the A/A pair: one folder against
itself shows what chance alone wins), and a folder counts as faster than the peer only where it
won enough rounds against each of the two timings for a one-sided sign test to give p < 0.05."""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from benchmarks._results import print_tables, save, table
from benchmarks.llm import GGUF, paired, run_recipe, shipped_recipe
from edgekit.checks import lm as lmcheck
from edgekit.profile.generation import measure_in_child
from edgekit.recipe.sections import DataSpec, ModelSpec
from edgekit.runtimes.cpu_classes import local_class

SPEC = SimpleNamespace(warmup_s=0.5, min_duration_s=2.0, min_iters=16, max_duration_s=20.0)
PROMPT, NEW_TOKENS = 128, 64


def sign_test(wins: int, rounds: int) -> float:
    """One-sided sign test: the chance of at least `wins` faster rounds of `rounds` when neither
    folder is faster (each round a coin toss)."""
    return sum(math.comb(rounds, k) for k in range(wins, rounds + 1)) / 2 ** rounds


def recipe_stages(name: str) -> list[dict[str, Any]]:
    """The stages of recipes/<name>.yaml, so that a variant measured here is the shipped recipe's."""
    return shipped_recipe(name)["stages"]


def edgekit_run(src: Path, out: Path, name: str, stages: list[dict[str, Any]], args: argparse.Namespace,
                target: str, calibration: int = 16) -> dict[str, Path]:
    """One edgekit run of `stages` on `src` (benchmarks.llm.run_recipe: verified loosely on the
    benchmark's held-out windows, not profiled), with `calibration` windows of 256 tokens for the
    stages that read data; each artifact's model file by its name."""
    recipe = {
        "edgekit": 1, "name": name, "model": {"hf": str(src)},
        "data": {"calibration": {"builtin": "pydoc_topics", "split": "train", "samples": calibration,
                                 "seq_len": 256},
                 "evaluation": {"builtin": "pydoc_topics", "split": "test"}},
        "stages": stages, "targets": [target],
    }
    manifest = run_recipe(name, recipe, src, out, args.windows, args.seq_len)
    return {a["name"]: out / "out" / name / a["path"] for a in manifest["artifacts"]}


def held_out(cl: Any, windows: int, seq_len: int) -> tuple[Any, np.ndarray, list[np.ndarray], float]:
    """The tokenizer, the held-out windows, PyTorch fp32's log-probabilities on them and its
    perplexity."""
    from edgekit.runtimes.genai import TorchLM
    from edgekit.sources.text import load_text, token_windows

    tok = cl.tokenizer()
    texts = load_text(DataSpec(builtin="pydoc_topics", split="test", samples=windows, seq_len=seq_len),
                      "evaluation", Path.cwd()).texts
    ids = token_windows(texts, lambda t: list(tok(t, add_special_tokens=False)["input_ids"]), seq_len, windows,
                        "evaluation", sep=tok.eos_token_id)
    ref = TorchLM(cl.torch_model(), 2, tok.eos_token_id)
    refs = [lmcheck.log_softmax(ref.logits(w)) for w in ids]
    own = lmcheck.Tally()  # PyTorch fp32 scored against itself: the reference perplexity
    for w, lp in zip(ids, refs):
        own.add(lp, lp, w)
    return tok, ids, refs, own.summary()["perplexity"]


def score(runtime: str, folders: dict[str, Path], windows: np.ndarray, refs: list[np.ndarray]) -> dict[str, dict]:
    """Perplexity, KL and agreement of each folder against PyTorch fp32, at the runtime's defaults."""
    from edgekit.runtimes import open_runner

    quality = {}
    for k, model in folders.items():
        runner, tally = open_runner(runtime, model, 2), lmcheck.Tally()
        for w, lp in zip(windows, refs):
            tally.add(lp, runner.logits(w), w)
        details = dict(getattr(runner, "details", {}))
        runner.close()
        quality[k] = {**tally.summary(), "runner": details}
        print(f"{k}: perplexity {quality[k]['perplexity']:.3f}", flush=True)
    return quality


def time_rounds(runtime: str, folders: dict[str, Path], prompt: np.ndarray, eos: int, rounds: int) -> dict[str, list[float]]:
    """Decode ms per token of each folder, once a round in a fresh process, the order rotated."""
    names, decode = list(folders), {k: [] for k in folders}
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            m = measure_in_child(runtime, folders[k], {PROMPT: prompt}, NEW_TOKENS, SPEC, 2, eos)
            decode[k].append(m["decode_ms_per_token"]["median_ms"])
            print(f"round {r + 1}/{rounds} {k}: {decode[k][-1]:.2f} ms/token", flush=True)
    return decode


def weights_mb(model: Path) -> float:
    """The model file and its weights beside it (model.onnx + model.onnx.data, openvino_model.xml
    + .bin): what a decode step reads, without tokenizer and config files."""
    return sum(f.stat().st_size for f in model.parent.iterdir() if f.name.startswith(model.stem + ".")) / 1e6


def verdict_tables(title: str, peer: str, again: str, candidates: list[str], quality: dict[str, dict],
                   decode: dict[str, list[float]], sizes: dict[str, float], fp32_ppl: float,
                   labels: tuple[str, str, str]) -> list[dict[str, Any]]:
    """The variants' table and the verdict of each candidate against the peer. `labels`: the
    speed column's, the won-rounds column's and the verdict table's title."""
    rounds = len(decode[peer])
    speed_col, wins_col, verdict_title = labels

    def wins(k: str, against: str = peer) -> int:
        return sum(a > b for a, b in zip(decode[against], decode[k]))

    def spread(k: str) -> str:
        ratios = sorted(a / b for a, b in zip(decode[peer], decode[k]))
        return f"{ratios[0]:.2f}–{ratios[-1]:.2f}"

    rows = [[k, f"{sizes[k]:.1f}", f"{quality[k]['perplexity']:.3f}", f"{quality[k]['perplexity'] / fp32_ppl - 1:+.1%}",
             f"{quality[k]['kl_mean']:.4f}", f"{statistics.median(decode[k]):.2f}", f"{paired(decode, peer, k):.2f}x",
             spread(k), f"{wins(k)} of {rounds}"] for k in decode]
    verdicts = []
    for k in [*candidates, again]:
        speed, ppl, theirs = paired(decode, peer, k), quality[k]["perplexity"], quality[peer]["perplexity"]
        # faster only where the rounds say so beyond chance, against both timings of the peer's
        # folder: one folder against itself won 9 of 12 rounds in one run here (p = 0.07), so
        # a median above 1, or a win over one timing, is not yet a speed-up
        p = max(sign_test(wins(k), rounds), sign_test(wins(k, again), rounds))
        both = speed >= 1.0 and ppl <= theirs
        status = ("met" if p < 0.05 else f"a tie within the noise (p = {p:.2f})") if both else "not met"
        verdicts.append([k, f"{speed:.2f}x (rounds faster: {wins(k)} and {wins(k, again)} of {rounds} against the two "
                            f"timings, sign test p <= {p:.3f}), {ppl:.3f} vs {theirs:.3f}", ">= 1x and no worse",
                         "–" if k == again else status])
    return [
        table(title, ["variant", "weights MB", "perplexity", "vs fp32", "KL/token", "decode ms/token", speed_col,
                      "range over rounds", wins_col], rows),
        table(verdict_title, ["edgekit folder", "decode speed, perplexity", "goal", "status"], verdicts),
    ]


Build = Callable[[Any, Path, argparse.Namespace], tuple[dict[str, Path], dict[str, Any]]]


def compare(name: str, runtime: str, describe: str, ap: argparse.ArgumentParser, build: Build, again: str,
            candidates: list[str], labels: tuple[str, str, str]) -> None:
    """A whole benchmark: SmolLM2-135M's fp32 directory from the GGUF, `build(cl, tmp, args)`'s
    folders (the peer's first) and what to record beside them, their quality, the peer's folder
    timed again as `again`, the paired rounds, the tables; writes results/<class>/<name>.json."""
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args()

    from edgekit.sources.causal_lm import load_causal_lm

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), Path(tmp))
        folders, extra = build(cl, Path(tmp), args)
        peer = next(iter(folders))
        tok, windows, refs, fp32_ppl = held_out(cl, args.windows, args.seq_len)
        quality = score(runtime, folders, windows, refs)
        # the same folder under a second name, timed in the same rounds
        folders[again], quality[again] = folders[peer], quality[peer]
        sizes = {k: weights_mb(m) for k, m in folders.items()}
        decode = time_rounds(runtime, folders, windows.reshape(-1)[:PROMPT], tok.eos_token_id, args.rounds)

    tables = verdict_tables(
        f"{describe} on {local_class()}: {len(windows)} held-out windows of {args.seq_len} tokens (PyTorch fp32 "
        f"perplexity {fp32_ppl:.3f}); decode at batch 1, 2 threads, prompt {PROMPT}, {NEW_TOKENS} new tokens, "
        f"{args.rounds} rounds", peer, again, candidates, quality, decode, sizes, fp32_ppl, labels)
    print_tables(tables)
    save(name, tables, {"quality": quality, "decode_ms": decode, "sizes_mb": sizes, "fp32_perplexity": fp32_ppl,
                        **extra})
