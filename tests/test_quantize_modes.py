"""Every quantization mode on a tiny real ONNX MLP: what it produces, which runtime runs it,
how close its outputs stay to float, and the recipe-time refusal of impossible targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.checks import metrics  # noqa: E402
from edgekit.errors import AccuracyError, RecipeError  # noqa: E402
from edgekit.recipe import parse_recipe  # noqa: E402
from edgekit.runtimes import open_runner  # noqa: E402
from edgekit.stages.state import Dataset, ModelState  # noqa: E402


def _mlp(path: Path, layernorm: bool = False) -> Path:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32), n)
             for n, s in (("w1", (64, 128)), ("w2", (128, 128)), ("w3", (128, 32)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"),
             helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
             helper.make_node("MatMul", ["a2", "w3"], ["y0"], name="fc3")]
    if layernorm:
        inits += [numpy_helper.from_array(np.ones(32, np.float32), "g"),
                  numpy_helper.from_array(np.zeros(32, np.float32), "b")]
        nodes.append(helper.make_node("LayerNormalization", ["y0", "g", "b"], ["y"], name="ln", axis=-1))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"], name="out"))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _recipe(**over):
    data = {"edgekit": 1, "name": "t", "model": {"onnx": "m.onnx"},
            "stages": [{"kind": "quantize.int8"}], "accuracy": {"metric": "mse", "max_drop": 1.0}}
    data.update(over)
    return parse_recipe(data)


def _state(tmp_path: Path, layernorm: bool = False, recipe=None) -> ModelState:
    work = tmp_path / "models"
    work.mkdir()
    src = _mlp(work / "fp32.onnx", layernorm)
    rng = np.random.default_rng(1)
    cal = [{"x": rng.normal(size=(1, 64)).astype(np.float32)} for _ in range(32)]
    ev = [{"x": rng.normal(size=(1, 64)).astype(np.float32)} for _ in range(16)]
    return ModelState(torch_model=None, input_names=["x"], output_names=["y"], example=cal[0], workdir=work,
                      onnx_path=src, calibration=Dataset("cal", cal, None, list(range(32))),
                      evaluation=Dataset("ev", ev, None, list(range(16))), recipe=recipe or _recipe())


def _cosine(state: ModelState, path: Path) -> float:
    ref, got = open_runner("onnxruntime", state.onnx_path, 1), open_runner("onnxruntime", path, 1)
    r = np.concatenate([ref.run(s)[0] for s in state.evaluation.samples])
    g = np.concatenate([got.run(s)[0] for s in state.evaluation.samples])
    return float(metrics.cosine_per_sample(r, g).mean())


def _run(kind: str, state: ModelState, **cfg):
    from edgekit.stages.registry import REGISTRY

    stage = REGISTRY[kind].load()()
    return stage.run(state, stage.Config(kind=kind, **cfg))


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_static_int8_every_calibration_method(tmp_path, method):
    state, rec = _run("quantize.int8", _state(tmp_path), activations={"calibration": method})
    art = state.artifacts[-1]
    assert {"onnxruntime", "openvino"} <= set(art.runs_on)
    assert "QuantizeLinear" in _ops(art.path)
    assert rec.measured["preset"] == "cnn" and rec.measured["calibration_method"] == method
    assert _cosine(state, art.path) > 0.99


def test_auto_preset_keeps_a_transformer_s_fragile_ops_float(tmp_path):
    state, rec = _run("quantize.int8", _state(tmp_path, layernorm=True))
    assert rec.measured["preset"] == "transformer"
    g = onnx.load(str(state.artifacts[-1].path)).graph
    produced_by = {o: n.op_type for n in g.node for o in n.output}
    # the layer norm reads its input straight from the float MatMul, not through a Q/DQ pair
    ln = next(n for n in g.node if n.op_type == "LayerNormalization")
    assert produced_by[ln.input[0]] != "DequantizeLinear"
    assert set(rec.measured["precision"].values()) == {"int8"}


def test_dynamic_int8_runs_on_onnxruntime_only(tmp_path):
    state, rec = _run("quantize.dynamic", _state(tmp_path))
    art = state.artifacts[-1]
    assert art.runs_on == ("onnxruntime",) and rec.measured["integer_nodes"] >= 3
    assert _cosine(state, art.path) > 0.99


def test_fp16_keeps_float32_io(tmp_path):
    state, _ = _run("quantize.fp16", _state(tmp_path))
    art = state.artifacts[-1]
    m = onnx.load(str(art.path))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)
    assert _cosine(state, art.path) > 0.999


@pytest.mark.parametrize("method", ["rtn", "gptq", "hqq"])
def test_int4_weight_only_packs_matmuls(tmp_path, method):
    state, rec = _run("quantize.int4", _state(tmp_path), method=method, group_size=32)
    art = state.artifacts[-1]
    assert rec.measured["matmulnbits_nodes"] == 3 and art.runs_on == ("onnxruntime",)
    assert art.size_bytes() < 0.35 * state.onnx_path.stat().st_size
    assert _cosine(state, art.path) > 0.97


def test_int4_embeddings_need_rtn():
    with pytest.raises(RecipeError, match=r"embeddings: true needs method rtn .*got method 'gptq'"):
        _recipe(stages=[{"kind": "quantize.int4", "method": "gptq", "embeddings": True}])


def test_int4_rewrites_gemm_so_linear_layers_are_packed(tmp_path):
    from edgekit.quantize.int4 import gemm_to_matmul

    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 64)).astype(np.float32)  # [out, in] as onnxslim writes Linear
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="lin", transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(16, np.float32), "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = rng.normal(size=(1, 64)).astype(np.float32)
    assert gemm_to_matmul(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    onnx.save(model, str(tmp_path / "g.onnx"))
    got = open_runner("onnxruntime", tmp_path / "g.onnx", 1).run({"x": x})[0]
    np.testing.assert_allclose(got, x @ w.T + 1, rtol=1e-5, atol=1e-5)


def test_recipe_refuses_an_ort_only_artifact_on_openvino_only_targets():
    with pytest.raises(RecipeError) as exc:
        _recipe(stages=[{"kind": "quantize.int4"}], targets=["openvino"])
    msg = str(exc.value)
    assert "\n" not in msg
    assert "quantize.int4" in msg and "onnxruntime" in msg


def test_accuracy_aware_moves_sensitive_nodes_to_float_until_the_budget_holds(tmp_path):
    recipe = _recipe(accuracy={"metric": "mse", "max_drop": 0.0})
    state = _state(tmp_path, recipe=recipe)
    state, rec = _run("quantize.int8", state, accuracy_aware={"enabled": True, "max_trials": 10, "samples": 8})
    aa = rec.measured["accuracy_aware"]
    assert aa["final_drop"] <= 0.0
    last = aa["trials"][-1]["float_nodes"]
    assert rec.measured["excluded_nodes"] == last
    assert all(rec.measured["precision"][n] == "float" for n in last)
    # the scan ranked every candidate and wrote sensitivity.json beside models/
    assert {r["node"] for r in rec.measured["sensitivity"]["nodes"]} == {"fc1", "fc2", "fc3"}
    assert (state.workdir.parent / "sensitivity.json").is_file()


def test_accuracy_aware_fails_naming_the_best_drop_and_the_nodes_tried(tmp_path):
    state = _state(tmp_path, recipe=_recipe(accuracy={"metric": "mse", "max_drop": 0.0}))
    with pytest.raises(AccuracyError) as exc:
        _run("quantize.int8", state, accuracy_aware={"enabled": True, "max_trials": 2, "samples": 8})
    msg = str(exc.value)
    assert "could not meet accuracy.max_drop 0.0" in msg and "after 2 trials" in msg
    assert "nodes moved to float: fc" in msg


def _attention(path: Path) -> Path:
    """One self-attention head: q, k, v projections (constant weights, k's through a Transpose of
    a constant), q x k^T, softmax, probabilities x v, an output projection."""
    rng = np.random.default_rng(0)
    w = {n: (rng.normal(size=(16, 16)) / 4).astype(np.float32) for n in ("wq", "wk", "wv", "wo")}
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
             helper.make_node("Transpose", ["wk"], ["wk_t"], name="wk_t", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wk_t"], ["k"], name="k_proj"),
             helper.make_node("MatMul", ["x", "wv"], ["v"], name="v_proj"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"], name="mix"),
             helper.make_node("MatMul", ["o", "wo"], ["y"], name="o_proj")]
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 16])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_transformer_preset_keeps_attention_products_float(tmp_path):
    """ONNX Runtime's QDQ quantizer ignores MatMulConstBOnly; the preset excludes q x k^T and
    probabilities x v itself, so neither they nor the softmax output are quantized."""
    from edgekit.quantize.static_int8 import activation_matmuls

    work = tmp_path / "models"
    work.mkdir()
    src = _attention(work / "fp32.onnx")
    assert activation_matmuls(src) == ["scores", "mix"]
    rng = np.random.default_rng(1)
    cal = [{"x": rng.normal(size=(1, 6, 16)).astype(np.float32)} for _ in range(16)]
    state = ModelState(torch_model=None, input_names=["x"], output_names=["y"], example=cal[0], workdir=work,
                       onnx_path=src, calibration=Dataset("cal", cal, None, list(range(16))), recipe=_recipe())
    state, rec = _run("quantize.int8", state, preset="transformer", overflow_fix="none")
    assert rec.measured["float_activation_matmuls"] == 2
    g = onnx.load(str(state.artifacts[-1].path)).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    fed = {n.name: [producer.get(i) for i in n.input] for n in g.node if n.op_type == "MatMul"}
    assert all("DequantizeLinear" not in ops for name, ops in fed.items() if name in ("scores", "mix"))
    assert all(ops[0] == "DequantizeLinear" for name, ops in fed.items() if name.endswith("_proj"))
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "p" for n in g.node)
