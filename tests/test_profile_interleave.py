"""Interleaved rounds: every model timed once per round, the starting model rotating, sessions
re-opened as asked and never left open."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekit.profile.interleave import Rounds, Sessions, time_rounds


@given(n=st.integers(1, 5), rounds=st.integers(1, 7))
def test_each_round_times_every_model_once_starting_from_the_next(n: int, rounds: int) -> None:
    order: list[int] = []

    def run(i: int):
        return lambda: order.append(i)

    timing = Rounds(rounds, block_s=0.0, block_iters=1, warmup_s=0.0)
    out = time_rounds([run(i) for i in range(n)], timing)
    assert [len(x) for x in out] == [rounds] * n
    del order[:n]  # the warm-up run of each
    # a block here is the first inference (timed apart) and one timed run: two calls per block
    blocks = order[::2]
    assert blocks == [(r + k) % n for r in range(rounds) for k in range(n)]


class Runner:
    live: list["Runner"] = []

    def __init__(self, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("cannot open")
        Runner.live.append(self)

    def close(self) -> None:
        Runner.live.remove(self)


def test_sessions_reopen_and_close_everything_even_when_an_open_fails() -> None:
    with Sessions([Runner, Runner]) as s:
        first = list(s.runners)
        s.open()
        assert s.opened == 2 and len(Runner.live) == 2 and not set(first) & set(Runner.live)
    assert Runner.live == []
    with pytest.raises(RuntimeError, match="cannot open"):
        Sessions([Runner, lambda: Runner(fail=True)])
    assert Runner.live == []


def test_reopen_every_n_rounds() -> None:
    opened: list[int] = []
    timing = Rounds(7, block_s=0.0, block_iters=1, warmup_s=0.0, reopen=3)
    time_rounds([lambda: None, lambda: None], timing, fresh=lambda: opened.append(1))
    assert len(opened) == 2  # before rounds 3 and 6
    opened.clear()
    time_rounds([lambda: None], Rounds(7, 0.0, 1, 0.0, reopen=0), fresh=lambda: opened.append(1))
    assert opened == []
