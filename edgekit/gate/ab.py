"""`--ab BASE CANDIDATE`: both models timed in the same job, in interleaved rounds.

Shared CI runners drift by more than the regressions worth catching, so base and candidate are
never measured minutes apart: each round times a short block of each (the same runner protocol
as `edgekit profile`, `edgekit.profile.latency.measure`), alternating which goes first (AB, BA,
AB, ...) so that neither always runs right after the other. `compare.compare` then decides on
the per-round medians.

Both models are opened afresh every `reopen` rounds (default: every round; see
`edgekit.profile.interleave` for why), with the runtime's `side_by_side` settings (ONNX Runtime:
no spinning worker threads, so the idle model takes no core from the timed one).

A language model's artifacts are compared on decode time per token instead: each round
generates from the same prompt (the first LM_PROMPT tokens of the recorded evaluation text)
until the block has its decode steps, every step after the first token one sample. LM sessions
are opened once (a load takes seconds; the generators do not spin between calls).

Test hook: `run_rounds` takes plain callables, so a test can time a candidate that is made
slower on purpose (e.g. a runner that runs the model twice) through exactly this loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import UsageError
from edgekit.gate import Check
from edgekit.gate.compare import MIN_ROUNDS, Comparison, compare
from edgekit.profile.interleave import Rounds, Sessions, time_rounds


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

    def timing(self) -> Rounds:
        return Rounds(self.rounds, self.block_s, self.block_iters, self.warmup_s, self.reopen)


@dataclass(frozen=True)
class Side:
    label: str
    model: Path
    feeds: dict[str, np.ndarray]
    runtime_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # as the artifact is deployed
    lm: bool = False  # a causal LM: compared on decode time per token
    runs_on: tuple[str, ...] = ()  # an artifact's runtimes (empty for a bare model file)


LM_PROMPT, LM_NEW = 32, 33  # prompt tokens, and new tokens per generation (32 decode steps after the first)


def side_from(spec: Path, artifact: Optional[str], inputs: Optional[list[Any]]) -> Side:
    """A model file (.onnx, feeds from the recipe's inputs or the model's static shapes) or an
    artifact directory (its final artifact, or `artifact`, fed with its recorded reference input)."""
    if spec.is_dir():
        from edgekit.artifact.manifest import is_language_model, read_manifest, read_reference

        manifest = read_manifest(spec)
        arts = {a["name"]: a for a in manifest["artifacts"]}
        if not arts:
            raise UsageError(f"--ab {spec}: the manifest lists no artifacts")
        name = artifact or manifest["artifacts"][-1]["name"]
        if name not in arts:
            raise UsageError(f"--artifact {name!r} is not in {spec}; allowed: {', '.join(arts)}")
        inputs, _ = read_reference(spec, manifest)
        feeds = {k: inputs[k][: v["shape"][0]] for k, v in manifest["inputs"].items()}
        return Side(f"{spec.name}:{name}", spec / arts[name]["path"], feeds, arts[name].get("runtime_options", {}),
                    lm=is_language_model(manifest), runs_on=tuple(arts[name]["runs_on"]))
    if spec.suffix != ".onnx" or not spec.is_file():
        raise UsageError(f"--ab {spec}: not an artifact directory or an .onnx file")
    from edgekit.recipe import ModelSpec
    from edgekit.sources.model import load_model

    lm = load_model(ModelSpec(onnx=str(spec.resolve())), inputs, spec.resolve().parent)
    return Side(spec.name, spec, lm.example)


def run_rounds(base: Callable[[], Any], candidate: Callable[[], Any], s: AbSettings,
               tick: Callable[[int], None] = lambda n: None,
               fresh: Optional[Callable[[], None]] = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Base and candidate rounds (AB, BA, ...); `fresh()` re-opens both, see time_rounds."""
    a, b = time_rounds([base, candidate], s.timing(), fresh, tick)
    return a, b


def measure_ab(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
               tick: Callable[[int], None] = lambda n: None) -> tuple[Comparison, str]:
    """The comparison, and what was timed (runs, rounds, sessions) for the check's detail."""
    if s.rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {s.rounds}: the A/B comparison needs at least {MIN_ROUNDS}")
    if base.lm != candidate.lm:
        lm, other = (base, candidate) if base.lm else (candidate, base)
        raise UsageError(f"--ab: {lm.label} is a language model and {other.label} is not; compare like with like")
    if base.lm:
        return _measure_lm(base, candidate, runtime, threads, s, tick)
    from edgekit.runtimes import open_runner

    def opener(side: Side) -> Callable[[], Any]:
        return lambda: open_runner(runtime, side.model, threads, side_by_side=True,
                                   **side.runtime_options.get(runtime, {}))

    with Sessions([opener(base), opener(candidate)]) as sessions:
        a, b = run_rounds(lambda: sessions.runner(0).run(base.feeds), lambda: sessions.runner(1).run(candidate.feeds),
                          s, tick, fresh=sessions.open)
    timed = f"{sum(map(len, a))}+{sum(map(len, b))} runs in {s.rounds} rounds, sessions opened {sessions.opened}x"
    return compare(a, b, s.min_effect, s.alpha, s.max_cv), timed


def _measure_lm(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
                tick: Callable[[int], None]) -> tuple[Comparison, str]:
    import time

    from edgekit.runtimes import open_runner

    sides = (base, candidate)
    prompts = [np.asarray(side.feeds["input_ids"]).reshape(-1)[:LM_PROMPT] for side in sides]
    runners = []
    try:
        for side in sides:
            runners.append(open_runner(runtime, side.model, threads, **side.runtime_options.get(runtime, {})))

        def block(i: int) -> np.ndarray:
            samples: list[float] = []
            end = time.perf_counter() + s.block_s
            while len(samples) < s.block_iters or time.perf_counter() < end:
                timings: list[float] = []
                runners[i].generate(prompts[i], LM_NEW, timings)
                samples += [t * 1000.0 for t in timings[1:]]
            return np.asarray(samples)

        for i in (0, 1):
            block(i)  # warm-up, untimed
        out: list[list[np.ndarray]] = [[], []]
        for r in range(s.rounds):
            for k in (0, 1):
                out[(r + k) % 2].append(block((r + k) % 2))
            tick(1)
    finally:
        for runner in runners:
            runner.close()
    timed = (f"{sum(map(len, out[0]))}+{sum(map(len, out[1]))} decode steps after a {LM_PROMPT}-token prompt in "
             f"{s.rounds} rounds, sessions opened once")
    return compare(out[0], out[1], s.min_effect, s.alpha, s.max_cv), timed


def check_ab(base: Side, candidate: Side, runtime: str, threads: int, s: AbSettings,
             tick: Callable[[int], None] = lambda n: None) -> Check:
    c, timed = measure_ab(base, candidate, runtime, threads, s, tick)
    return Check("ab", "median decode time per token" if base.lm else "median latency", f"{base.label} → {candidate.label} ({runtime})", c.status,
                 c.candidate_median_ms, c.base_median_ms * (1 + s.min_effect), "ms",
                 f"{c.reason}; base {c.base_median_ms:.4g} ms, {timed}")
