"""Several models timed in turn, round after round, each opened afresh every round.

On a busy machine a session settles into a speed of its own for its whole life (where the
scheduler put its worker threads): the same model opened twice ran ~15% slower in one session
than in the other, round after round, and A/A gates with sessions kept failed 10 times in 120
(`benchmarks/gate_ab.py --aa-under-load 30`, twice). Interleaving rounds spreads the machine's
drift over every model; opening the sessions afresh each round spreads this too, as round-to-
round noise that the statistics see. `gate --ab` and the benchmarks that compare edgekit with its
peers in one run both time through here.

The order in which the sessions are opened rotates with every opening too. On a busy machine
the session opened second ran slower than the one opened first although both were opened
afresh every round: over 150 A/A gates under one busy core (x86-vnni, Intel Xeon, ONNX Runtime
2 threads, 6 rounds of 20 ms), the candidate, always opened second, was 7.5% slower on average
and slower in 80% of the runs; one of them failed. With the order rotating, the mean was -1.4%
(47% of runs) and none failed: what the slot costs now falls on both models in turn, in the
even/odd A/A split that the decision reads as noise (benchmarks/gate_ab.py --aa-under-load)."""

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
    again, the n-th opening starting from opener n mod count (see the module's note).
    `runner(i)` is always opener i's. Use as a context manager, so they are closed whatever
    happens."""

    def __init__(self, openers: Sequence[Callable[[], Any]]) -> None:
        self.openers = list(openers)
        self.runners: list[Any] = []
        self.opened = 0
        self.open()

    def open(self) -> None:
        self.close()
        n = len(self.openers)
        order = [(self.opened + k) % n for k in range(n)]
        opened: dict[int, Any] = {}
        try:
            for i in order:
                opened[i] = self.openers[i]()
        except BaseException:
            for runner in opened.values():  # the ones already open: a failed open leaves nothing behind
                runner.close()
            raise
        self.runners = [opened[i] for i in range(n)]
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
