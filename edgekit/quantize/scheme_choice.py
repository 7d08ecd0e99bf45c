"""`overflow_fix: auto` where a deploy class saturates: build every scheme that is safe there,
measure each one's fidelity on the calibration data and its speed on this machine, keep the
most faithful one unless it is slower than the fastest by more than the margin (in every
interleaved round).

Why measure rather than fix a rule: which safe scheme loses least depends on the model. 7-bit
weights halve the weight resolution, which costs depthwise convolutions (few weights per output
channel) far more than dense ones; U8U8 keeps 8 bits but runs without VNNI's u8 x s8 kernels;
ONNX Runtime's run-time option keeps full-range weights but only ONNX Runtime honours it, and
only CPUs without VNNI apply it (they then run u8 x u8 kernels: slower there). The record keeps
every candidate's figures, so a user sees what was given up."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.quantize.overflow import X64_QUANT_PRECISION, OverflowChoice
from edgekit.runtimes.device_side import int32_dot_products

MARGIN = 0.10  # a more faithful scheme may be this much slower than the fastest
FIDELITY_SAMPLES = 32


@dataclass
class Candidate:
    scheme: str  # reduce_range | u8u8 | runtime
    cosine_mean: float
    median_ms: float
    round_ms: tuple[float, ...] = ()  # its median in each interleaved round


def too_slow(c: Candidate, candidates: list[Candidate], margin: float) -> bool:
    """Slower than the fastest by more than `margin`, in every interleaved round where rounds
    were kept (else by the medians). Why every round: on a small model two schemes that run the
    same kernels differ by noise alone, and a choice that followed the noise made two builds of
    one recipe write different files (so an identical rebuild missed the emulation cache)."""
    rounds = [x.round_ms for x in candidates]
    if c.round_ms and all(len(r) == len(c.round_ms) for r in rounds):
        return all(t > min(r[i] for r in rounds) * (1.0 + margin) for i, t in enumerate(c.round_ms))
    return c.median_ms > min(x.median_ms for x in candidates) * (1.0 + margin)


def pick(candidates: list[Candidate], margin: float = MARGIN) -> Candidate:
    """The most faithful candidate among those not too slow (ties: faster)."""
    eligible = [c for c in candidates if not too_slow(c, candidates, margin)]
    return max(eligible, key=lambda c: (c.cosine_mean, -c.median_ms))


def safe_schemes(plan: Any) -> dict[str, tuple[Any, OverflowChoice]]:
    """Each scheme that cannot saturate on the deploy classes, as (config, overflow choice) to
    quantize the calibrated plan with."""
    cfg, cpus = plan.cfg, plan.overflow.cpus
    why = "measured among the schemes safe on " + ", ".join(cpus)
    # not among them: reduce_range_dw8 (8-bit depthwise weights), measured less faithful than
    # plain 7-bit weights on PP-OCRv4's detector (benchmarks/int8_scheme.py)
    out = {"reduce_range": (cfg, OverflowChoice("reduce_range", True, {}, why, list(cpus)))}
    if cfg.activations.dtype == "uint8":  # onnxruntime has no S8 x U8 kernels
        u8u8 = cfg.model_copy(update={"weights": cfg.weights.model_copy(update={"dtype": "uint8", "symmetric": False})})
        out["u8u8"] = (u8u8, OverflowChoice("u8u8", False, {}, why, list(cpus)))
    out["runtime"] = (cfg, OverflowChoice("runtime", False, dict(X64_QUANT_PRECISION), why, list(cpus)))
    return out


def choose(plan: Any, float_model: Path, samples: list[dict[str, np.ndarray]], threads: int,
           tick: Optional[Callable[[int], None]] = None, margin: float = MARGIN,
           keep: Optional[Path] = None, excluded: tuple[str, ...] = (),
           schemes: Optional[dict[str, tuple[Any, OverflowChoice]]] = None) -> tuple[Any, dict[str, Any], bool]:
    """The plan re-targeted at the chosen scheme, the record of every candidate (each built with
    the recipe's `excluded` nodes in float), and whether the chosen file was moved to `keep`.
    Where onnxruntime cannot open the candidates, nothing is chosen: the plan stays as the rule
    made it, and the stage's own check names the refused node."""
    from edgekit.errors import ModelLoadError

    from edgekit.checks.verify import parity
    from edgekit.profile.interleave import Rounds, Sessions, time_rounds
    from edgekit.runtimes import ort

    schemes = schemes if schemes is not None else safe_schemes(plan)
    feeds = samples[:FIDELITY_SAMPLES]
    ref_runner = ort.OrtRunner(float_model, threads)
    try:
        ref = np.concatenate([np.asarray(ref_runner.run(s)[0]) for s in feeds])
    finally:
        ref_runner.close()
    with tempfile.TemporaryDirectory(prefix="edgekit-scheme-") as d:
        paths, plans, cosines = {}, {}, {}
        for name, (cfg, overflow) in schemes.items():
            extra = {**plan.extra, "WeightSymmetric": cfg.weights.symmetric}
            plans[name] = replace(plan, cfg=cfg, overflow=overflow, extra=extra)
            paths[name] = Path(d) / f"{name}.onnx"
            plans[name].quantize(paths[name], list(excluded))
            try:
                runner = ort.OrtRunner(paths[name], threads, **plans[name].ort_options)
            except ModelLoadError as exc:
                return plan, {"overflow_candidates": [], "overflow_choice_skipped": str(exc)}, False
            try:
                got = np.concatenate([np.asarray(runner.run(s)[0]) for s in feeds])
            finally:
                runner.close()
            cosines[name] = parity(ref, got)["cosine_mean"]
            if tick:
                tick(1)
        names = list(schemes)
        # 0.2 s a block: four candidates on a VNNI machine (the run-time option also applied) cost
        # what three at 0.3 s did
        timing = Rounds(3, 0.2, block_iters=10, warmup_s=0.2, rewarm_s=0.1, max_block_s=3.0)
        openers = [lambda n=n: ort.OrtRunner(paths[n], threads, **plans[n].ort_options) for n in names]
        # where this CPU skips the run-time option (VNNI), also time it applied: what a deploy
        # CPU without VNNI runs, so the record shows what the choice costs there
        forced = [n for n in names if plans[n].overflow.fix == "runtime"] if int32_dot_products() else []
        openers += [lambda n=n: ort.OrtRunner(paths[n], threads, every_entry=True, **plans[n].ort_options)
                    for n in forced]
        with Sessions(openers) as sessions:
            per_round = time_rounds([lambda i=i: sessions.runner(i).run(feeds[0]) for i in range(len(openers))],
                                    timing, fresh=sessions.open)
        if tick:
            tick(1)
        by_round = [tuple(float(np.median(r)) for r in rounds) for rounds in per_round]
        ms = [float(np.median(r)) for r in by_round]
        cands = [Candidate(n, cosines[n], ms[i], by_round[i]) for i, n in enumerate(names)]
        without_vnni = dict(zip(forced, ms[len(names):]))
        best = pick(cands, margin)
        if keep is not None:
            shutil.move(str(paths[best.scheme]), str(keep))
    chosen = plans[best.scheme]
    fastest = min(c.median_ms for c in cands)
    elsewhere = ""
    if best.scheme in without_vnni:
        elsewhere = (f"; this CPU has VNNI, so the option is not applied here; a deploy CPU without VNNI applies it: "
                     f"{without_vnni[best.scheme] / fastest:.2f}x when timed applied here")
    chosen.overflow.reason = (f"{best.scheme}: mean cosine {best.cosine_mean:.5f} on {len(feeds)} calibration samples, "
                              f"{best.median_ms / fastest:.2f}x the fastest safe scheme's time here (margin "
                              f"{margin:.0%}){elsewhere}; measured among the schemes safe on {', '.join(plan.overflow.cpus)}")
    record = {"overflow_candidates": [{"scheme": c.scheme, "cosine_mean": round(c.cosine_mean, 6),
                                       "median_ms": round(c.median_ms, 4),
                                       "round_ms": [round(t, 4) for t in c.round_ms], "chosen": c is best,
                                       **({"median_ms_option_applied": round(without_vnni[c.scheme], 4)}
                                          if c.scheme in without_vnni else {})} for c in cands],
              "overflow_margin": margin}
    return chosen, record, keep is not None
