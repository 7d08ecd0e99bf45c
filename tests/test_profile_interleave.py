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


def test_rounds_reopen_the_models_as_asked_and_warm_them_untimed() -> None:
    """Sessions settle into a speed of their own on a busy machine, so models are opened afresh
    every `reopen` rounds; a fresh session's first runs are slow (here its first two take
    100 ms, against microseconds after), and they are warm-up, never timed."""
    import time

    opened: list[int] = []
    slow = {"a": 0, "b": 0}

    def fresh() -> None:
        opened.append(1)
        slow.update(a=2, b=2)

    def run(side: str):
        def go() -> None:
            if slow[side]:
                slow[side] -= 1
                time.sleep(0.1)
        return go

    fresh()
    s = Rounds(6, block_s=0.005, block_iters=3, warmup_s=0.0, reopen=2)
    a, b = time_rounds([run("a"), run("b")], s, fresh=fresh)
    assert len(opened) == 3  # the first sessions, and afresh before rounds 2 and 4
    assert len(a) == len(b) == 6
    assert max(float(x.max()) for x in a + b) < 50.0
    time_rounds([run("a"), run("b")], Rounds(6, block_s=0.001, warmup_s=0.0, reopen=0), fresh=fresh)
    assert len(opened) == 3


@given(n=st.integers(1, 4), opens=st.integers(1, 9))
def test_the_opening_order_rotates_and_runner_i_stays_opener_is(n: int, opens: int) -> None:
    """On a busy machine the session opened second ran slower (7.5% in 150 A/A gates), so each
    opening starts from the next opener; `runner(i)` is opener i's whatever the order."""
    firsts: list[int] = []
    log: list[int] = []

    class Tagged:
        def __init__(self, i: int) -> None:
            self.i = i
            log.append(i)

        def close(self) -> None:
            pass

    with Sessions([lambda i=i: Tagged(i) for i in range(n)]) as s:
        for k in range(opens):
            if k:
                s.open()
            firsts.append(log[-n])
            assert [s.runner(i).i for i in range(n)] == list(range(n))
    assert firsts == [k % n for k in range(opens)]
