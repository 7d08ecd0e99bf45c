"""The Pareto front and the choice, as properties over random results."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from edgekit.sweep.pareto import choose, dominates, feasible, front

pts = st.lists(st.tuples(st.floats(0.01, 100, allow_nan=False), st.floats(-1, 0, allow_nan=False)), max_size=25)


@given(pts)
def test_front_is_exactly_the_non_dominated_points(points):
    f = front(points)
    for i in f:
        assert not any(dominates(q, points[i]) for q in points)
    for j in set(range(len(points))) - set(f):
        assert any(dominates(points[i], points[j]) for i in f)  # something on the front beats it


@given(pts, st.randoms())
def test_front_does_not_depend_on_order(points, rnd):
    perm = list(range(len(points)))
    rnd.shuffle(perm)
    shuffled = [points[i] for i in perm]
    assert sorted(points[i] for i in front(points)) == sorted(shuffled[i] for i in front(shuffled))


@given(pts)
def test_front_is_sorted_fastest_first_and_quality_rises_along_it(points):
    f = [points[i] for i in front(points)]
    for a, b in zip(f, f[1:]):
        assert a[0] <= b[0]
        assert a[1] <= b[1]  # slower members of the front must be more accurate


def _rows(points):
    return [{"latency_p90_ms": lat, "drop": -q, "fidelity": 1.0} for lat, q in points]


@given(pts, st.floats(0, 1))
def test_chosen_is_feasible_fastest_and_on_the_front(points, max_drop):
    rows = _rows(points)
    obj = SimpleNamespace(minimize="latency_p90_ms", accuracy_drop_max=max_drop, fidelity_min=None)
    c = choose(rows, obj)
    ok = [r for r in rows if r["drop"] <= max_drop + 1e-12]  # the tolerance feasible() allows
    if not ok:
        assert c is None
        return
    assert feasible(rows[c], obj)
    assert rows[c]["latency_p90_ms"] == min(r["latency_p90_ms"] for r in ok)
    assert any(points[i] == points[c] for i in front(points))


def test_feasible_applies_every_constraint():
    obj = SimpleNamespace(minimize="latency_p90_ms", accuracy_drop_max=0.01, fidelity_min=0.99)
    assert feasible({"latency_p90_ms": 1.0, "drop": 0.005, "fidelity": 0.995}, obj)
    assert not feasible({"latency_p90_ms": 1.0, "drop": 0.02, "fidelity": 0.995}, obj)
    assert not feasible({"latency_p90_ms": 1.0, "drop": 0.005, "fidelity": 0.98}, obj)
    assert not feasible({"latency_p90_ms": None, "drop": 0.0, "fidelity": 1.0}, obj)  # not timed
