"""Property tests of the pure metric and statistics functions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgekit.checks import evaluate, metrics
from edgekit.profile.stats import early_stopping_upper, summarize

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
outputs = arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(2, 12)), elements=finite)


@given(outputs)
def test_cosine_of_self_is_one_and_bounded(x):
    cos = metrics.cosine_per_sample(x, x)
    assert np.all(cos >= 1 - 1e-6) or np.all(np.abs(x) == 0)
    other = metrics.cosine_per_sample(x, -x)
    assert np.all((other >= -1) & (other <= 1))


@given(outputs, st.floats(0.01, 100))
def test_cosine_is_scale_invariant(x, k):
    a = metrics.cosine_per_sample(x, x * np.float32(k))
    nz = np.linalg.norm(x.reshape(len(x), -1), axis=1) > 1e-3
    assert np.allclose(a[nz], 1.0, atol=1e-5)


@given(outputs)
def test_top1_agreement_with_self_and_labels(x):
    assert metrics.top1_agreement(x, x) == 1.0
    labels = x.argmax(1)
    assert metrics.top1(x, labels) == 1.0
    assert metrics.max_abs(x, x) == 0.0 and metrics.mse(x, x) == 0.0


def test_drop_direction_per_metric():
    assert evaluate.drop("top1", 0.99, 0.98) > 0
    assert evaluate.drop("mse", 0.0, 0.1) > 0
    assert evaluate.drop("cosine_fidelity", 1.0, 1.0) == 0


@settings(max_examples=50)
@given(arrays(np.float64, st.integers(1, 400), elements=st.floats(0.01, 100)))
def test_summary_is_ordered(x):
    s = summarize(x)
    assert s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["n"] == len(x) and s["iqr_ms"] >= 0
    bound = s["p90_upper_bound_ms"]
    if len(x) < 44:  # 0.9**44 > 0.01: too few samples for any 99% bound on p90
        assert bound is None
    if bound is not None:
        assert bound >= s["p90_ms"] - 1e-9 or np.isclose(bound, s["p90_ms"])


def test_early_stopping_needs_enough_samples():
    x = np.arange(1, 1001, dtype=float)
    bound = early_stopping_upper(x, 0.90, 0.99)
    assert 900 < bound <= 930  # above the sample p90, within a few percent of it at n=1000
    assert early_stopping_upper(np.ones(20), 0.90, 0.99) is None

