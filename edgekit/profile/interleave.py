"""Several models timed in turn, round after round, each opened afresh every round.

On a busy machine a session settles into a speed of its own for its whole life (where the
scheduler put its worker threads): the same model opened twice ran ~15% slower in one session
than in the other, round after round, and A/A gates with sessions kept failed 10 times in 120
(`benchmarks/gate_ab.py --aa-under-load 30`, twice). Interleaving rounds spreads the machine's
drift over every model; opening the sessions afresh each round spreads this too, as round-to-
round noise that the statistics see. `gate --ab` and the benchmarks that compare edgekit with its
peers in one run both time through here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgekit.profile.latency import measure


@dataclass(frozen=True)
class Rounds:
    rounds: int
    block_s: float  # timed seconds per model per round
    block_iters: int = 10  # and at least this many runs
    warmup_s: float = 0.5  # untimed, before the first round
    reopen: int = 1  # open every model afresh every N rounds; 0 keeps the first sessions
    rewarm_s: Optional[float] = None  # untimed, after re-opening (default: block_s)
    max_block_s: Optional[float] = None  # a block stops here even short of block_iters (default: max(10 x block_s, 2 s))


class Sessions:
    """Runners opened side by side from their openers; `open()` closes them all and opens them
    again. Use as a context manager, so they are closed whatever happens."""

    def __init__(self, openers: Sequence[Callable[[], Any]]) -> None:
        self.openers = list(openers)
        self.runners: list[Any] = []
        self.opened = 0
        self.open()

    def open(self) -> None:
        self.close()
        try:
            for opener in self.openers:
                self.runners.append(opener())
        except BaseException:
            self.close()  # the ones already open: a failed open leaves nothing behind
            raise
        self.opened += 1

    def close(self) -> None:
        while self.runners:
            self.runners.pop().close()

    def runner(self, i: int) -> Any:
        return self.runners[i]

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _warm(run: Callable[[], Any], seconds: float) -> None:
    end = time.perf_counter() + seconds
    run()
    while time.perf_counter() < end:
        run()


def time_rounds(runs: Sequence[Callable[[], Any]], s: Rounds, fresh: Optional[Callable[[], None]] = None,
                tick: Callable[[int], None] = lambda n: None) -> list[list[np.ndarray]]:
    """Per run, one array of samples (ms) per round. Round r starts with run r mod n (for two:
    AB, BA, AB, ...), so no model always follows the same other. `fresh()`, when given, re-opens
    what the runs run, before every `s.reopen`-th round; each is then warmed, untimed."""
    cap = s.max_block_s if s.max_block_s is not None else max(10 * s.block_s, 2.0)
    out: list[list[np.ndarray]] = [[] for _ in runs]
    for run in runs:
        _warm(run, s.warmup_s)
    for r in range(s.rounds):
        if fresh is not None and s.reopen and r and r % s.reopen == 0:
            fresh()
            for run in runs:
                _warm(run, s.block_s if s.rewarm_s is None else s.rewarm_s)
        for k in range(len(runs)):
            i = (r + k) % len(runs)
            out[i].append(np.asarray(measure(runs[i], 0.0, s.block_s, s.block_iters, cap)["samples_ms"]))
        tick(1)
    return out
