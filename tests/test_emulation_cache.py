"""edgekit.checks.emulation_cache: what keys an emulated run, when a stored run stands for a new
one, and that run_outputs answers from it without starting QEMU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.checks import emulate
from edgekit.checks import emulation_cache as ec


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))


def _model(path, scale: float = 1.0):
    import onnx
    from onnx import TensorProto, helper

    w = np.full((8, 4), scale, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [onnx.numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_every_part_of_the_key_changes_it(tmp_path):
    m = _model(tmp_path / "m.onnx")
    x = ec.inputs_digest({"x": np.ones((3, 8), np.float32)})
    base = ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 2)
    assert base == ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 2)
    variants = [
        ec.key(m, "onnxruntime", "onnxruntime", {"graph_optimization_level": "basic"}, "x86-avx2", "Haswell", x, 2),
        ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-sse", "Nehalem", x, 2),
        ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", ec.inputs_digest({"x": np.zeros((3, 8))}), 2),
        ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 1),
    ]
    (tmp_path / "m.onnx.data").write_bytes(b"external weights")  # a sibling the model reads
    variants.append(ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 2))
    (tmp_path / "other.onnx").write_bytes(b"another artifact")  # not a sibling: no effect
    assert variants[-1] == ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 2)
    _model(m, scale=2.0)
    variants.append(ec.key(m, "onnxruntime", "onnxruntime", {}, "x86-avx2", "Haswell", x, 2))
    assert len({base, *variants}) == len(variants) + 1


@settings(max_examples=40, deadline=None)
@given(stored=st.integers(1, 20), planned=st.integers(1, 20), old_budget=st.floats(1, 100),
       new_budget=st.floats(1, 100))
def test_a_stored_run_stands_for_a_new_one_only_where_the_new_one_could_not_do_better(
        stored, planned, old_budget, new_budget):
    """A complete run always; a run its budget cut short under a budget no larger, however few
    samples it reached (a rerun would reach no more, and give the same "not verified: budget")."""
    k = f"k{stored}-{planned}-{old_budget}-{new_budget}"
    out = np.arange(stored * 2, dtype=np.float32).reshape(stored, 2)
    ec.store(k, out, planned=planned, seconds=1.0, budget_s=old_budget)
    got = ec.load(k, planned, new_budget)
    complete = stored >= planned
    cut_short_no_more_budget = new_budget <= old_budget
    assert (got is not None) == (complete or cut_short_no_more_budget)
    if got is not None:
        np.testing.assert_array_equal(got.outputs, out[:planned])


needs_qemu = pytest.mark.skipif(emulate.qemu_binary() is None, reason=emulate.INSTALL_HINT)


@needs_qemu
def test_a_second_run_of_the_same_bytes_comes_from_the_cache_and_a_changed_model_does_not(tmp_path, monkeypatch):
    m = _model(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    models = [{"key": "m", "runtime": "onnxruntime", "model": str(m), "options": {}}]
    first = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=600)
    assert first.cached == {} and first.record("m").get("from_cache") is None

    def no_qemu(*a, **k):
        raise AssertionError("emulated again")

    with monkeypatch.context() as mp:
        mp.setattr(emulate, "_emulate", no_qemu)
        again = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=600)
        np.testing.assert_array_equal(again.outputs["m"], first.outputs["m"])
        rec = again.record("m")
        assert rec["from_cache"] is True and rec["mode"] == "emulated" and rec["emulated_at"]
        _model(m, scale=3.0)  # another model under the same name
        with pytest.raises(AssertionError, match="emulated again"):
            emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=600)
        # and with the cache off it emulates whatever is stored
        _model(m)
        with pytest.raises(AssertionError, match="emulated again"):
            emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=600, cache=False)
    np.testing.assert_allclose(first.outputs["m"], x @ np.ones((8, 4), np.float32), rtol=1e-5)


def test_a_model_whose_share_ran_out_before_its_first_sample_is_kept_with_its_budget(tmp_path, monkeypatch):
    """A budget-cut job answers for the models that finished something; the one that finished
    nothing is kept as such, so a warm rebuild under the same budget does not spend it again, and
    a larger budget runs it again. A model that failed is not kept."""
    a, b, bad = (_model(tmp_path / f"{n}.onnx", scale=s) for n, s in (("a", 1.0), ("b", 2.0), ("bad", 3.0)))
    x = np.ones((4, 8), np.float32)
    models = [{"key": k, "runtime": "onnxruntime", "model": str(p), "options": {}}
              for k, p in (("a", a), ("b", b), ("bad", bad))]
    calls = []

    def cut_short(cls, todo, inputs, threads, budget_s, min_samples=None):
        calls.append([m["key"] for m in todo])
        return emulate.EmulatedRun(cls, "Haswell", {"a": np.ones((2, 1, 4), np.float32)}, {"bad": "it crashed"},
                                   9.0, "host", {"a": {"samples": 2, "seconds": 8.0}, "b": {"samples": 0}},
                                   stopped="stopped at its deadline")

    monkeypatch.setattr(emulate, "_emulate", cut_short)
    first = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=60)
    assert "b" not in first.outputs and emulate.budget_shortfall(first, "b", 1, 60)
    again = emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=60)
    assert calls == [["a", "b", "bad"], ["bad"]]  # only the failed model runs again
    assert len(again.outputs["b"]) == 0 and again.record("b")["from_cache"] is True
    assert "not verified: budget: 0 sample(s) in its share (stored from a run on 20" in \
        emulate.budget_shortfall(again, "b", 1, 60)
    assert len(again.outputs["a"]) == 2
    emulate.run_outputs("x86-avx2", models, {"x": x}, threads=1, budget_s=120)
    assert calls[-1] == ["a", "b", "bad"]  # more budget: everything cut short runs again


def test_a_run_stopped_for_a_minimum_stands_only_for_runs_needing_as_many():
    """A job stopped at its budget because it could not reach 4 samples skipped the grace in
    which one more sample might have finished: a run that needs fewer must run again."""
    ec.store("cut", np.ones((1, 2), np.float32), planned=5, seconds=2.0, budget_s=60, cut_for=4)
    assert ec.load("cut", 5, 60, min_samples=4) is not None and ec.load("cut", 5, 60, min_samples=6) is not None
    assert ec.load("cut", 5, 60, min_samples=2) is None and ec.load("cut", 5, 60) is None
    assert ec.load("cut", 5, 120, min_samples=4) is None  # more budget: more samples
