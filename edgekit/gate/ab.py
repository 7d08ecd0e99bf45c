"""`--ab BASE CANDIDATE`: both models timed in the same job, in interleaved rounds.

Shared CI runners drift by more than the regressions worth catching, so base and candidate are
never measured minutes apart: each round times a short block of each (the same runner protocol
as `edgekit profile`, `edgekit.profile.latency.measure`), alternating which goes first (AB, BA,
AB, ...) so that neither always runs right after the other. `compare.compare` then decides on
the per-round medians.

Both models are opened afresh every `reopen` rounds (default: every round), with the runtime's
`side_by_side` settings (ONNX Runtime: no spinning worker threads). A session settles into a
speed of its own on a busy machine (where the scheduler put its worker threads): on the 2-core
runner with another process on one core, the same model opened twice ran ~15% slower in one
session than the other for a whole run, and A/A gates failed 10 times in 120 with sessions kept
(spinning or not); opened afresh each round, that becomes round-to-round noise the decision sees
(0 in 60; `benchmarks/gate_ab.py --aa-under-load 30`, twice).

Test hook: `run_rounds` takes plain callables, so a test can time a candidate that is made
slower on purpose (e.g. a runner that runs the model twice) through exactly this loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import UsageError
from edgekit.gate import Check
from edgekit.gate.compare import MIN_ROUNDS, Comparison, compare


@dataclass(frozen=True)
class AbSettings:
    rounds: int = 20
    block_s: float = 0.1
    block_iters: int = 10
    warmup_s: float = 0.5
    min_effect: float = 0.10
    alpha: float = 0.05
    max_cv: float = 0.25
    reopen: int = 1  # open both models afresh every N rounds; 0 keeps the first sessions


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
               tick: Callable[[int], None] = lambda n: None,
               fresh: Optional[Callable[[], None]] = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`fresh()`, when given, re-opens what `base` and `candidate` run, before every
    `s.reopen`-th round; both are then warmed for one block, untimed."""
    from edgekit.profile.latency import measure

    def block(run: Callable[[], Any], warmup_s: float) -> np.ndarray:
        stats = measure(run, warmup_s, s.block_s, s.block_iters, max(10 * s.block_s, 2.0))
        return np.asarray(stats["samples_ms"])

    def warm(run: Callable[[], Any], seconds: float) -> None:
        end = time.perf_counter() + seconds
        run()
        while time.perf_counter() < end:
            run()

    warm(base, s.warmup_s)
    warm(candidate, s.warmup_s)
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for r in range(s.rounds):
        if fresh is not None and s.reopen and r and r % s.reopen == 0:
            fresh()
            warm(base, s.block_s)
            warm(candidate, s.block_s)
        if r % 2 == 0:
            a.append(block(base, 0.0))
            b.append(block(candidate, 0.0))
        else:
            b.append(block(candidate, 0.0))
            a.append(block(base, 0.0))
        tick(1)
    return a, b


class _Sessions:
    """Base and candidate opened on one runtime, side by side, re-openable between rounds."""

    def __init__(self, runtime: str, threads: int, base: Side, candidate: Side) -> None:
        self.runtime, self.threads, self.sides = runtime, threads, (base, candidate)
        self.runners: list[Any] = []
        self.opened = 0
        self.open()

    def open(self) -> None:
        from edgekit.runtimes import open_runner

        self.close()
        for side in self.sides:
            self.runners.append(open_runner(self.runtime, side.model, self.threads, side_by_side=True,
                                            **side.runtime_options.get(self.runtime, {})))
        self.opened += 1

    def close(self) -> None:
        while self.runners:
            self.runners.pop().close()

    def run_base(self) -> Any:
        return self.runners[0].run(self.sides[0].feeds)

    def run_candidate(self) -> Any:
        return self.runners[1].run(self.sides[1].feeds)


def measure_ab(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
               tick: Callable[[int], None] = lambda n: None) -> tuple[Comparison, str]:
    """The comparison, and what was timed (runs, rounds, sessions) for the check's detail."""
    if s.rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {s.rounds}: the A/B comparison needs at least {MIN_ROUNDS}")
    sessions = _Sessions(runtime, threads, base, candidate)
    try:
        a, b = run_rounds(sessions.run_base, sessions.run_candidate, s, tick, fresh=sessions.open)
    finally:
        sessions.close()
    timed = f"{sum(map(len, a))}+{sum(map(len, b))} runs in {s.rounds} rounds, sessions opened {sessions.opened}x"
    return compare(a, b, s.min_effect, s.alpha, s.max_cv), timed


def check_ab(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
             tick: Callable[[int], None] = lambda n: None) -> Check:
    c, timed = measure_ab(base, candidate, runtime, threads, s, tick)
    return Check("ab", "median latency", f"{base.label} → {candidate.label} ({runtime})", c.status,
                 c.candidate_median_ms, c.base_median_ms * (1 + s.min_effect), "ms",
                 f"{c.reason}; base {c.base_median_ms:.4g} ms, {timed}")
