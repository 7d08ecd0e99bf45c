"""Grid, seeded random and TPE searches answer ask/tell the same way."""

from __future__ import annotations

import pytest

from edgekit.sweep.search import ListSearch, grid, key, make, sample

VARY = {"a": [1, 2, 3], "b": ["x", [16, 8]], "c": [True]}


def test_grid_is_every_combination_in_file_order():
    g = grid(VARY)
    assert len(g) == 6
    assert g[0] == {"a": 1, "b": "x", "c": True} and g[1] == {"a": 1, "b": [16, 8], "c": True}
    assert len({key(s) for s in g}) == 6


def test_random_is_distinct_seeded_and_within_the_grid():
    s1, s2 = sample(VARY, 4, seed=3), sample(VARY, 4, seed=3)
    assert s1 == s2
    assert len({key(s) for s in s1}) == 4
    assert {key(s) for s in s1} <= {key(s) for s in grid(VARY)}
    assert {key(s) for s in sample(VARY, 6, seed=1)} == {key(s) for s in grid(VARY)}
    with pytest.raises(ValueError, match="only 6 distinct"):
        sample(VARY, 7, seed=0)


def test_list_search_hands_out_each_point_once():
    s = ListSearch(grid(VARY))
    got = s.ask(4) + s.ask(4) + s.ask(4)
    assert len(got) == 6 and s.ask(1) == []


def test_tpe_asks_its_budget_and_learns_from_tells():
    pytest.importorskip("optuna")
    vary = {"a": list(range(6)), "b": [0, 1]}
    s = make("tpe", vary, 24, seed=0)
    asked = 0
    while True:
        pts = s.ask(2)
        if not pts:
            break
        asked += len(pts)
        for p in pts:
            s.tell(p, None if p["b"] == 1 else float(p["a"] + 1))  # b=1 always fails
    assert asked == 24
    study = s._study
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert study.best_value == 1.0  # found a=0, b=0
    assert len(done) + len([t for t in study.trials if t.state.name == "FAIL"]) == 24
