"""finetune.qat: the grids match ONNX Runtime's quantizers exactly (snapped weights survive
re-quantization unchanged), the stage trains for the quantizer after it, and recipes that
cannot work are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgekit.quantize.fake_quant import Grid, fake_quant_weight, snap
from tests.conftest import fast_profile, write_recipe


def _matmul_model(w_in_out: np.ndarray) -> onnx.ModelProto:
    k, n = w_in_out.shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g", [x], [y],
                          [numpy_helper.from_array(w_in_out, "W")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _weights(seed: int, rows: int, cols: int, skew: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.1
    w[0] += skew  # a channel of one sign, where an asymmetric range does not straddle 0
    return w


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), symmetric=st.booleans(), group=st.sampled_from([16, 32]),
       cols=st.sampled_from([32, 48, 64]), skew=st.sampled_from([0.0, 0.5, -0.5]))
def test_int4_snapped_weights_survive_matmulnbits_unchanged(seed, symmetric, group, cols, skew):
    """ONNX Runtime re-derives each block's scale from the snapped weights and lands on the same
    integers: the MatMulNBits layer computes with exactly the snapped weights."""
    import onnxruntime as ort
    from onnxruntime.quantization import matmul_nbits_quantizer as nb

    w = torch.from_numpy(_weights(seed, 8, cols, skew))  # torch layout: [out, in], blocks along in
    grid = Grid(-8, 7, True, "block", group, signed_max=True) if symmetric else Grid(0, 15, False, "block", group)
    snapped = snap(w, grid).numpy()
    q = nb.MatMulNBitsQuantizer(_matmul_model(snapped.T.copy()), bits=4, block_size=group, is_symmetric=symmetric)
    q.process()
    assert [n.op_type for n in q.model.model.graph.node] == ["MatMulNBits"]
    sess = ort.InferenceSession(q.model.model.SerializeToString(), providers=["CPUExecutionProvider"])
    dequantized = sess.run(None, {"x": np.eye(cols, dtype=np.float32)})[0]  # row i = weights of input i
    np.testing.assert_allclose(dequantized, snapped.T, rtol=0, atol=1e-6)
    # and the rounding was real: snapping moved the weights
    assert np.abs(snapped - w.numpy()).max() > 1e-4


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), reduce_range=st.booleans(), per_channel=st.booleans(),
       skew=st.sampled_from([0.0, 0.5]))
def test_int8_snapped_weights_keep_their_integers_in_quantize_static(tmp_path_factory, seed, reduce_range,
                                                                     per_channel, skew):
    from onnxruntime import quantization as q

    from edgekit.quantize.qat import grids
    from edgekit.quantize.static_int8 import StaticInt8Config

    cfg = StaticInt8Config(kind="quantize.int8", overflow_fix="reduce_range" if reduce_range else "none",
                           weights={"granularity": "per_channel" if per_channel else "per_tensor"})
    wgrid, agrid, kinds = grids(cfg, ["x86-vnni"])
    assert (wgrid.qmin, wgrid.qmax) == ((-64, 64) if reduce_range else (-127, 127)) and kinds == {"conv", "linear"}
    w = torch.from_numpy(_weights(seed, 6, 16, skew))
    snapped = snap(w, wgrid).numpy()
    tmp = tmp_path_factory.mktemp("q8")
    onnx.save(_matmul_model(snapped.T.copy()), tmp / "f.onnx")
    rng = np.random.default_rng(seed)
    feeds = iter([{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(4)])

    class Reader:
        def get_next(self):
            return next(feeds, None)

    q.quantize_static(str(tmp / "f.onnx"), str(tmp / "q.onnx"), Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=per_channel, reduce_range=reduce_range, activation_type=q.QuantType.QUInt8,
                      weight_type=q.QuantType.QInt8, extra_options={"WeightSymmetric": True})
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(tmp / "q.onnx").graph.initializer}
    ints, scale = inits["W_quantized"].astype(np.float32), inits["W_scale"]
    np.testing.assert_allclose(ints * scale, snapped.T, rtol=1e-6, atol=1e-7)


def test_fake_quant_passes_gradients_straight_through():
    w = torch.randn(4, 32, requires_grad=True)
    fake_quant_weight(w, Grid(0, 15, False, "block", 16)).sum().backward()
    assert torch.all(w.grad == 1.0)


def _vit_recipe(stages: list[dict], **extra) -> dict:
    return fast_profile({
        "edgekit": 1, "name": "vit-qat", "model": {"python": "edgekit.models.zoo:digits_vit"},
        "inputs": [{"name": "x", "shape": [1, 1, 32, 32], "dtype": "float32"}],
        "data": {"calibration": {"builtin": "digits", "split": "train", "samples": 32},
                 "evaluation": {"builtin": "digits", "split": "test"}},
        "stages": stages, "targets": ["onnxruntime"], "verify": {"cosine_min": 0.9, "samples": 16},
        "accuracy": {"metric": "top1", "max_drop": 0.05}, **extra,
    })


INT8 = {"kind": "quantize.int8", "preset": "cnn", "overflow_fix": "reduce_range",
        "activations": {"calibration": "entropy"}}


def test_qat_vit_int8_ships_the_trained_integers(cli, tmp_path):
    data = _vit_recipe([{"kind": "finetune.qat", "epochs": 1, "samples": 128, "lr": 1e-4},
                        {"kind": "export.onnx"}, INT8])
    result = cli("compress", "-q", "-r", write_recipe(tmp_path, data), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "vit-qat"
    manifest = json.loads((out / "manifest.json").read_text())
    qat = manifest["stages"][0]["measured"]
    assert qat["for"] == "quantize.int8 'int8'" and qat["layers"] == {"conv": 1, "linear": 17}
    assert qat["weight_grid"] == "-64..64 symmetric, per channel" and len(qat["loss_per_epoch"]) == 1
    # every Conv/Linear weight the quantizer stored is the exported float weight, integer for integer
    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(out / "models" / "fp32.onnx").graph.initializer}
    q = onnx.load(out / "models" / "int8.onnx")
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    checked = 0
    for n in q.graph.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm") or n.input[1] not in producer:
            continue
        dq = producer[n.input[1]]
        while dq.op_type == "Transpose" and dq.input[0] in producer:
            dq = producer[dq.input[0]]
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue  # an activation x activation product
        src = fp32[dq.input[0].removesuffix("_quantized")]
        ints, scale, zero = (inits[x] for x in dq.input[:3])
        axis = next((helper.get_attribute_value(a) for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * src.ndim
        if scale.ndim:
            shape[axis] = -1
        assert not zero.any()  # symmetric weights
        np.testing.assert_allclose(ints.astype(np.float32) * scale.reshape(shape), src, rtol=1e-6, atol=1e-7)
        checked += 1
    assert checked == 18  # the conv patch embedding and the 17 linear layers


def test_qat_hf_bert_int4_computes_with_the_exported_weights(cli, tmp_path):
    """A Hugging Face BERT directory (an architecture edgekit did not define): after QAT the INT4
    artifact, embeddings packed too, computes what the float export computes."""
    import onnxruntime as ort
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(cfg).eval().save_pretrained(tmp_path / "hf")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input_ids=rng.integers(1, 99, (48, 128)),
             attention_mask=np.ones((48, 128), np.int64))
    data = fast_profile({
        "edgekit": 1, "name": "bert-qat4", "model": {"hf": str(tmp_path / "hf")},
        "data": {"calibration": {"npz": str(tmp_path / "calib.npz")}},
        "stages": [{"kind": "finetune.qat", "epochs": 1, "data": "calibration", "batch": 16,
                    "distill": {"weight": 1.0, "loss": "cosine"}},
                   {"kind": "export.onnx"},
                   {"kind": "quantize.int4", "group_size": 16, "embeddings": True}],
        "targets": ["onnxruntime"], "verify": {"cosine_min": 0.9, "samples": 4},
    })
    result = cli("compress", "-q", "-r", write_recipe(tmp_path, data), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "bert-qat4"
    qat = json.loads((out / "manifest.json").read_text())["stages"][0]["measured"]
    # 13 linear layers: BERT's pooler too, which the mean-pooled output never reads (so not exported)
    assert qat["layers"] == {"embedding": 3, "linear": 13} and qat["activation_grid"] is None
    ops = [n.op_type for n in onnx.load(out / "models" / "int4.onnx").graph.node]
    assert ops.count("MatMulNBits") == 12 and "GatherBlockQuantized" in ops
    feeds = {"input_ids": rng.integers(1, 99, (1, 128)), "attention_mask": np.ones((1, 128), np.int64)}
    sessions = [ort.InferenceSession(str(out / "models" / f"{m}.onnx"), providers=["CPUExecutionProvider"])
                for m in ("fp32", "int4")]
    got = [s.run(None, feeds)[0] for s in sessions]
    np.testing.assert_allclose(got[1], got[0], rtol=0, atol=2e-4)


@pytest.mark.parametrize("stages,expected", [
    ([{"kind": "finetune.qat", "epochs": 1}, {"kind": "export.onnx"}],
     "stages[0] (finetune.qat): needs a quantize.int8 or quantize.int4 stage after it"),
    ([{"kind": "finetune.qat", "epochs": 1, "quantizer": "q8"}, {"kind": "export.onnx"},
      {**INT8, "name": "int8a"}],
     "stages[0] (finetune.qat): quantizer: no quantize.int8 / quantize.int4 stage named 'q8' after it; "
     "allowed: 'int8a'"),
    ([{"kind": "finetune.qat", "epochs": 1}, {"kind": "export.onnx"}, {"kind": "quantize.int8"}],
     "stages[0] (finetune.qat): quantize.int8 'int8' picks its weight grid at run time (overflow_fix auto"),
])
def test_qat_recipe_errors_are_one_line(cli, tmp_path, stages, expected):
    result = cli("validate", write_recipe(tmp_path, _vit_recipe(stages)))
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output


def test_qat_with_auto_overflow_fix_is_fine_when_no_deploy_class_saturates(cli, tmp_path):
    data = _vit_recipe([{"kind": "finetune.qat", "epochs": 1}, {"kind": "export.onnx"}, {"kind": "quantize.int8"}],
                       deploy={"cpus": ["x86-vnni", "x86-amx"]})
    result = cli("validate", write_recipe(tmp_path, data))
    assert result.exit_code == 0, result.output


def test_shipped_qat_recipe_validates(cli):
    from tests.conftest import RECIPES

    result = cli("validate", RECIPES / "vit_qat_int8.yaml")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((RECIPES / "vit_qat_int8.yaml").read_text())
    assert data["stages"][0]["kind"] == "finetune.qat"



def test_fake_quant_grid_describes_itself():
    assert Grid(0, 15, False, "block", 32).describe() == "0..15 asymmetric, block 32"
    assert Grid(-64, 64, True, "channel").describe() == "-64..64 symmetric, per channel"


def test_auto_preset_resolves_on_the_torch_model_as_on_the_graph():
    """quantize.int8's `auto` picks transformer for the ViT (its patch Conv then stays float, so
    QAT must not train it as INT8) and cnn for the CNN."""
    from edgekit.models.digits_nets import DigitsCNN, DigitsViT
    from edgekit.quantize.qat import grids, torch_preset
    from edgekit.quantize.static_int8 import StaticInt8Config

    q = StaticInt8Config(kind="quantize.int8", overflow_fix="reduce_range")
    assert torch_preset(q, DigitsViT()) == "transformer" and torch_preset(q, DigitsCNN()) == "cnn"
    assert grids(q, ["x86-vnni"], torch_preset(q, DigitsViT()))[2] == {"linear"}
    assert torch_preset(q.model_copy(update={"preset": "cnn"}), DigitsViT()) == "cnn"


def test_reduce_range_dw8_trains_depthwise_convolutions_on_8_bits_and_the_rest_on_7():
    """The grid QAT trains on is the one that ships: under reduce_range_dw8 only convolutions
    with one channel per group keep -127..127 (as edgekit.quantize.graph.depthwise_weights
    finds them in the exported graph)."""
    from torch import nn

    from edgekit.quantize.qat import depthwise_grid, grids, unwrap, wrap
    from edgekit.quantize.static_int8 import StaticInt8Config

    cfg = StaticInt8Config(kind="quantize.int8", overflow_fix="reduce_range_dw8")
    wgrid, agrid, kinds = grids(cfg, ["x86-avx2"])
    dw = depthwise_grid(cfg, ["x86-avx2"])
    assert (wgrid.qmin, wgrid.qmax, dw.qmin, dw.qmax) == (-64, 64, -127, 127)
    assert depthwise_grid(StaticInt8Config(kind="quantize.int8", overflow_fix="reduce_range"), ["x86-avx2"]) is None
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 3, groups=8),
                          nn.Conv2d(16, 16, 3, groups=8))
    wrapped = wrap(model, wgrid, agrid, kinds, dw)
    assert [w.grid is dw for w in wrapped.values()] == [False, True, False, False]
    unwrap(model, wrapped)
    assert all(type(m) is nn.Conv2d for m in model)
    for m, levels in zip(model, (64, 127, 64, 64)):  # snapped: per channel, integers of amax / levels
        w = m.weight.detach()
        ints = w / (w.abs().amax((1, 2, 3), keepdim=True) / levels)
        assert torch.allclose(ints, ints.round(), atol=1e-3) and int(ints.abs().max().round()) == levels
