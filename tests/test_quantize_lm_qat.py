"""quantize.weight_only with algorithm qat: the fake-quantized layer ships exactly what it
trained (its exported integers dequantize to the weight it computed with), the clipping search
never starts worse than plain min/max rounding, and the stage end to end on a tiny Llama: the
distillation KL goes down and both generation runtimes hold the trained integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgekit.quantize import lm_mixed as mx
from edgekit.quantize import lm_qat


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 8]), st.sampled_from([16, 32, 64]), st.booleans())
def test_the_exported_integers_are_what_the_layer_computed_with(seed, bits, group, symmetric):
    import torch

    rng = np.random.default_rng(seed)
    linear = torch.nn.Linear(64, 6, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(rng.normal(size=(6, 64)).astype(np.float32) * 0.05))
    fq = lm_qat.fake_quant_linear(linear, mx.Choice(bits, group), symmetric)
    with torch.no_grad():  # a training step's worth of drift, off the grid
        fq.weight.add_(torch.from_numpy(rng.normal(size=(6, 64)).astype(np.float32) * 0.01))
        fq.log_scale.add_(0.05)
        used = fq.quantized().numpy()
    q = fq.export()
    assert q.ints.dtype == np.uint8 and q.ints.max() < 2**bits and q.scales.dtype == np.float16
    assert q.symmetric == symmetric or not symmetric
    np.testing.assert_allclose(q.dequantized(), used, rtol=1e-6, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 8]), st.booleans())
@example(seed=4762, bits=8, symmetric=False)
def test_the_clipping_search_starts_no_worse_than_min_max_rounding(seed, bits, symmetric):
    import torch

    w = torch.from_numpy(np.random.default_rng(seed).standard_t(3, size=(4, 128)).astype(np.float32))
    c = mx.Choice(bits, 32)
    searched = lm_qat.fake_quant_linear(torch.nn.Linear(128, 4, bias=False), c, symmetric)
    with torch.no_grad():
        searched.weight.copy_(w)
        s, z = lm_qat.init_grid(w, c, symmetric)
        searched.log_scale.copy_(s.log())
        if z is not None:
            searched.zero.copy_(z)
        err = float(((searched.quantized() - w) ** 2).sum())
    # min/max rounding with its scales stored as the targets keep them (fp16), as the search's
    # are: a bare 1% allowance for fp32 scales was too little at 8 bits, where the steps are fine
    # enough that fp16's rounding of a scale is a large share of the error (hypothesis found it)
    g = w.reshape(4, 128 // 32, 32)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (g.abs().amax(-1, keepdim=True) / qmax).half().float()
        plain = torch.clamp(torch.round(g / scale), -qmax - 1, qmax) * scale
    else:
        qmax = 2 ** bits - 1
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / qmax).half().float()
        zero = torch.clamp(torch.round(-lo / scale), 0, qmax)
        plain = (torch.clamp(torch.round(g / scale) + zero, 0, qmax) - zero) * scale
    assert err <= float(((plain - g) ** 2).sum()) * (1 + 1e-6) + 1e-9
    # and within 1% of min/max with fp32 scales where the grid is coarse enough (4 bits)
    if bits == 4:
        assert err <= float(((mx.fake_quantize(w, c, symmetric) - w) ** 2).sum()) * 1.01 + 1e-9


pytest.importorskip("onnxruntime_genai")
pytest.importorskip("openvino_genai")
pytest.importorskip("neural_compressor")

from tests.test_quantize_weight_only import OV_INT4, ORT_INT4, _lm_recipe  # noqa: E402


def test_qat_trains_towards_the_float_model_and_both_runtimes_hold_its_integers(tmp_path, tiny_llama_dir):
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    stage = {"kind": "quantize.weight_only", "algorithm": "qat", "bits": 4, "group_size": 32,
             "qat": {"steps": 10, "scale_steps": 5},
             "layers": [{"match": "re:.*down_proj", "bits": 8}]}
    res = run(load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, [stage, ORT_INT4, OV_INT4])), tmp_path / "out")
    rec = {s["kind"]: s["measured"] for s in res.manifest["stages"]}
    wo = rec["quantize.weight_only"]
    assert wo["tool"] == "edgekit qat" and wo["layers_by_bits"] == {"4": 12, "8": 2}
    qat = wo["qat"]
    assert qat["weights_and_scales"]["steps"] == 10 and qat["scales"]["steps"] == 5
    assert qat["kl_after"] < qat["kl_init"], qat
    assert rec["target.onnxruntime-genai"]["integers_read_back_equal"] == 14
    assert rec["target.openvino-genai"]["integers_read_back_equal"] == 14


@pytest.mark.parametrize("extra, message", [
    ({"algorithm": "gptq", "qat": {"steps": 3}}, "qat: settings for algorithm qat, but algorithm is gptq"),
    ({"algorithm": "qat", "mse_search": True}, "mse_search: INC's scale search"),
    ({"algorithm": "qat", "qat": {"stepz": 3}}, "stepz"),
])
def test_bad_qat_settings_are_one_recipe_line(tmp_path, tiny_llama_dir, extra, message):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    stage = {"kind": "quantize.weight_only", "bits": 4, "group_size": 32, **extra}
    with pytest.raises(RecipeError) as exc:
        load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, [stage, ORT_INT4]))
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_qat_without_calibration_text_is_one_data_error(tmp_path, tiny_llama_dir):
    from edgekit.errors import DataError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    stage = {"kind": "quantize.weight_only", "algorithm": "qat", "bits": 4, "group_size": 32}
    with pytest.raises(DataError, match="quantize.weight_only: qat needs calibration text"):
        run(load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, [stage, ORT_INT4], calibration=False)), tmp_path / "o")
