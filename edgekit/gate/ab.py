"""`--ab BASE CANDIDATE`: both models timed in the same job, in interleaved rounds.

Shared CI runners drift by more than the regressions worth catching, so base and candidate are
never measured minutes apart: each round times a short block of each (the same runner protocol
as `edgekit profile`, `edgekit.profile.latency.measure`), alternating which goes first (AB, BA,
AB, ...) so that neither always runs right after the other, and with the runtime's `side_by_side`
settings (ONNX Runtime: no spinning worker threads) so the idle model does not slow the timed one. `compare.compare` then decides on
the per-round medians.

Test hook: `run_rounds` takes plain callables, so a test can time a candidate that is made
slower on purpose (e.g. a runner that runs the model twice) through exactly this loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import UsageError
from edgekit.gate import Check
from edgekit.gate.compare import MIN_ROUNDS, compare


@dataclass(frozen=True)
class AbSettings:
    rounds: int = 20
    block_s: float = 0.1
    block_iters: int = 10
    warmup_s: float = 0.5
    min_effect: float = 0.10
    alpha: float = 0.05
    max_cv: float = 0.25


@dataclass(frozen=True)
class Side:
    label: str
    model: Path
    feeds: dict[str, np.ndarray]
    runtime_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # as the artifact is deployed


def side_from(spec: Path, artifact: Optional[str], inputs: Optional[list[Any]]) -> Side:
    """A model file (.onnx, feeds from the recipe's inputs or the model's static shapes) or an
    artifact directory (its final artifact, or `artifact`, fed with its recorded reference input)."""
    if spec.is_dir():
        from edgekit.artifact import read_manifest, read_reference

        manifest = read_manifest(spec)
        arts = {a["name"]: a for a in manifest["artifacts"]}
        if not arts:
            raise UsageError(f"--ab {spec}: the manifest lists no artifacts")
        name = artifact or manifest["artifacts"][-1]["name"]
        if name not in arts:
            raise UsageError(f"--artifact {name!r} is not in {spec}; allowed: {', '.join(arts)}")
        inputs, _ = read_reference(spec, manifest)
        feeds = {k: inputs[k][: v["shape"][0]] for k, v in manifest["inputs"].items()}
        return Side(f"{spec.name}:{name}", spec / arts[name]["path"], feeds, arts[name].get("runtime_options", {}))
    if spec.suffix != ".onnx" or not spec.is_file():
        raise UsageError(f"--ab {spec}: not an artifact directory or an .onnx file")
    from edgekit.models.load import load_model
    from edgekit.recipe import ModelSpec

    lm = load_model(ModelSpec(onnx=str(spec.resolve())), inputs, spec.resolve().parent)
    return Side(spec.name, spec, lm.example)


def run_rounds(base: Callable[[], Any], candidate: Callable[[], Any], s: AbSettings,
               tick: Callable[[int], None] = lambda n: None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from edgekit.profile.latency import measure

    def block(run: Callable[[], Any], warmup_s: float) -> np.ndarray:
        stats = measure(run, warmup_s, s.block_s, s.block_iters, max(10 * s.block_s, 2.0))
        return np.asarray(stats["samples_ms"])

    block(base, s.warmup_s)
    block(candidate, s.warmup_s)
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for r in range(s.rounds):
        if r % 2 == 0:
            a.append(block(base, 0.0))
            b.append(block(candidate, 0.0))
        else:
            b.append(block(candidate, 0.0))
            a.append(block(base, 0.0))
        tick(1)
    return a, b


def check_ab(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
             tick: Callable[[int], None] = lambda n: None) -> Check:
    from edgekit.runtimes import open_runner

    if s.rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {s.rounds}: the A/B comparison needs at least {MIN_ROUNDS}")
    rb = open_runner(runtime, base.model, threads, side_by_side=True, **base.runtime_options.get(runtime, {}))
    try:
        rc = open_runner(runtime, candidate.model, threads, side_by_side=True, **candidate.runtime_options.get(runtime, {}))
        try:
            a, b = run_rounds(lambda: rb.run(base.feeds), lambda: rc.run(candidate.feeds), s, tick)
        finally:
            rc.close()
    finally:
        rb.close()
    c = compare(a, b, s.min_effect, s.alpha, s.max_cv)
    return Check("ab", "median latency", f"{base.label} → {candidate.label} ({runtime})", c.status,
                 c.candidate_median_ms, c.base_median_ms * (1 + s.min_effect), "ms",
                 f"{c.reason}; base {c.base_median_ms:.4g} ms, {sum(map(len, a))}+{sum(map(len, b))} runs "
                 f"in {s.rounds} rounds")
