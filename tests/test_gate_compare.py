"""The A/B decision rule as a pure function: properties over synthetic rounds (the inputs are
the rule's inputs, not measurements; measured A/B runs are in test_gate_ab.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.gate.compare import MIN_ROUNDS, chunk, compare


def rounds(seed: int, n_rounds: int, per_round: int, scale: float = 1.0, jitter: float = 0.05) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [scale * (1.0 + jitter * rng.standard_normal(per_round)).clip(0.5) for _ in range(n_rounds)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(MIN_ROUNDS, 30), per=st.integers(1, 40),
       jitter=st.floats(0.0, 0.5))
def test_identical_rounds_never_fail(seed: int, n: int, per: int, jitter: float) -> None:
    a = rounds(seed, n, per, jitter=jitter)
    c = compare(a, [r.copy() for r in a])
    assert c.status != "fail"
    assert c.effect == pytest.approx(0.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), seed_b=st.integers(0, 10_000), n=st.integers(6, 30),
       per=st.integers(5, 40), jitter=st.floats(0.0, 0.2), f1=st.floats(1.0, 3.0), df=st.floats(0.0, 2.0))
def test_failing_stays_failing_when_the_candidate_gets_slower(seed, seed_b, n, per, jitter, f1, df) -> None:
    base = rounds(seed, n, per, jitter=jitter)
    cand = rounds(seed_b, n, per, jitter=jitter)
    slow = compare(base, [r * f1 for r in cand])
    slower = compare(base, [r * (f1 + df) for r in cand])
    if slow.status == "fail":
        assert slower.status == "fail"
    assert slower.effect >= slow.effect - 1e-12


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(8, 30), per=st.integers(5, 40))
def test_twice_as_slow_with_low_noise_fails(seed: int, n: int, per: int) -> None:
    base = rounds(seed, n, per, jitter=0.02)
    c = compare(base, rounds(seed + 1, n, per, scale=2.0, jitter=0.02))
    assert c.status == "fail", c.reason
    assert c.effect == pytest.approx(1.0, abs=0.05)


def test_noisy_machine_is_inconclusive_not_pass() -> None:
    # even and odd rounds differ by 30%: the machine cannot resolve a 10% effect
    base = [np.full(10, 1.0 if i % 2 else 1.3) for i in range(12)]
    cand = [np.full(10, 1.05 if i % 2 else 1.35) for i in range(12)]
    c = compare(base, cand)
    assert c.status == "inconclusive"
    assert "too noisy" in c.reason


def test_small_effect_on_a_quiet_machine_passes() -> None:
    base = rounds(1, 20, 30, jitter=0.01)
    c = compare(base, rounds(2, 20, 30, scale=1.02, jitter=0.01))
    assert c.status == "pass", c.reason


def test_too_few_rounds_is_an_error() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_ROUNDS} rounds"):
        compare(rounds(0, MIN_ROUNDS - 1, 5), rounds(1, MIN_ROUNDS - 1, 5))


@given(n=st.integers(1, 500), k=st.integers(1, 50))
def test_chunk_keeps_every_sample_in_order(n: int, k: int) -> None:
    x = np.arange(n, dtype=float)
    if n < k:
        with pytest.raises(ValueError):
            chunk(x, k)
        return
    parts = chunk(x, k)
    assert len(parts) == k and all(len(p) > 0 for p in parts)
    assert np.array_equal(np.concatenate(parts), x)
