"""Streaming calibration: range properties (hypothesis), bounded memory, and the hand-off to
onnxruntime's quantize_static through its calibration cache."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgekit.quantize.calibrate import (
    METHODS,
    Histogram,
    choose_range,
    mse_range,
    percentile_range,
)

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
batches = st.lists(arrays(np.float32, st.integers(1, 300), elements=finite), min_size=1, max_size=6)


def _hist(batches: list[np.ndarray], bins: int = 256) -> Histogram:
    h = Histogram(bins)
    for b in batches:
        h.update(b)
    return h


@given(batches)
def test_histogram_counts_every_value_and_covers_it(bs):
    h = _hist(bs)
    data = np.concatenate(bs)
    assert h.total == data.size
    assert h.lo <= data.min() and data.max() <= h.hi
    assert (h.vmin, h.vmax) == (float(data.min()), float(data.max()))


@given(batches)
def test_minmax_range_contains_all_data(bs):
    lo, hi = choose_range(_hist(bs), "minmax")
    data = np.concatenate(bs)
    assert lo <= data.min() and data.max() <= hi


@given(batches, st.sampled_from(METHODS))
@example([np.array([3.08653e-39], np.float32)], "percentile")  # denormal range: the bin edges underflow
def test_every_range_lies_within_minmax(bs, method):
    h = _hist(bs)
    lo, hi = choose_range(h, method, percentile=99.9)
    assert h.vmin <= lo <= hi <= h.vmax


@given(batches, st.floats(90.5, 99.9), st.floats(0.01, 0.09))
def test_percentile_range_widens_with_the_percentile(bs, p, dp):
    h = _hist(bs)
    lo1, hi1 = percentile_range(h, p)
    lo2, hi2 = percentile_range(h, p + dp)
    assert lo2 <= lo1 and hi1 <= hi2


@given(batches)
def test_streaming_equals_one_shot_for_extremes(bs):
    streamed = _hist(bs)
    once = _hist([np.concatenate(bs)])
    assert choose_range(streamed, "minmax") == choose_range(once, "minmax")


def _quant_error(x: np.ndarray, lo: float, hi: float, levels: int = 256) -> float:
    step = (hi - lo) / (levels - 1)
    q = np.clip(np.round((np.clip(x, lo, hi) - lo) / step), 0, levels - 1) * step + lo
    return float(np.mean((x - q) ** 2))


def test_mse_range_beats_minmax_on_heavy_tails():
    x = np.random.default_rng(0).standard_t(2, size=200_000).astype(np.float32)
    h = _hist([x], bins=2048)
    lo, hi = mse_range(h)
    assert hi < h.vmax and lo > h.vmin  # it clips both tails
    assert _quant_error(x, lo, hi) < 0.9 * _quant_error(x, *choose_range(h, "minmax"))


@pytest.mark.slow
def test_memory_stays_bounded_over_many_samples():
    """2,000 samples of 64x32x32 floats (500 MB in total) through four tensors' histograms: the
    peak traced allocation stays under 8 MB (one sample plus the fixed-size histograms)."""
    rng = np.random.default_rng(1)
    hists = {k: Histogram() for k in range(4)}
    tracemalloc.start()
    try:
        for i in range(2000):
            x = rng.standard_normal((64, 32, 32), dtype=np.float32) * (1 + i % 7)
            for h in hists.values():
                h.update(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(h.total == 2000 * 64 * 32 * 32 for h in hists.values())
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def _tiny_model(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(32, 8)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    return path


def test_collected_ranges_drive_quantize_static(tmp_path):
    """The ranges edgekit computes are the ones onnxruntime writes into the QDQ graph."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper
    from onnxruntime import quantization as q

    from edgekit.quantize import calibrate

    model = _tiny_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(2)
    samples = [{"x": rng.normal(size=(1, 16)).astype(np.float32)} for _ in range(50)]
    hists = calibrate.collect(model, samples, ["MatMul"])
    assert set(hists) == {"x", "h", "r", "y"}
    rng_ = calibrate.ranges(hists, "minmax")
    cache = tmp_path / "ranges.json"
    calibrate.write_cache(rng_, cache)
    out = tmp_path / "q.onnx"
    q.quantize_static(str(model), str(out), None, calibration_cache_path=str(cache),
                      calibrate_method=q.CalibrationMethod.MinMax, activation_type=q.QuantType.QUInt8,
                      op_types_to_quantize=["MatMul"])
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    lo, hi = rng_["x"]
    scale = float(inits["x_scale"])
    assert scale == pytest.approx((max(hi, 0) - min(lo, 0)) / 255.0, rel=1e-5)
