"""Graph rewrites on a model with tied weights: an embedding table read by a Gather and, as
the transposed output projection, by a Gemm; and one weight read by two Gemm layers. Rewriting
one reader's weight in place would change what the others compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.checks import verify  # noqa: E402
from edgekit.recipe import VerifySpec  # noqa: E402
from edgekit.runtimes import open_runner  # noqa: E402
from edgekit.stages.state import Dataset, ModelState  # noqa: E402

V, D = 96, 64


def _tied(path: Path) -> Path:
    rng = np.random.default_rng(0)
    emb = (rng.normal(size=(V, D)) / np.sqrt(D)).astype(np.float32)  # [vocab, hidden]
    w = (rng.normal(size=(D, D)) / np.sqrt(D)).astype(np.float32)  # [out, in], read by two layers
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("Add", ["x", "e"], ["h0"], name="add"),
        helper.make_node("Gemm", ["h0", "w"], ["h1"], name="lin1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu"),
        helper.make_node("Gemm", ["a1", "w"], ["h2"], name="lin2", transB=1),
        helper.make_node("Gemm", ["h2", "emb"], ["logits"], name="lm_head", transB=1),  # tied to embed
    ]
    g = helper.make_graph(
        nodes, "tied",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, D]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, V]),
         helper.make_tensor_value_info("e", TensorProto.FLOAT, [4, D])],
        [numpy_helper.from_array(emb, "emb"), numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(4, D)).astype(np.float32), "ids": rng.integers(0, V, size=4).astype(np.int64)}
            for _ in range(n)]


def _outputs(path: Path, samples) -> list[np.ndarray]:
    r = open_runner("onnxruntime", path, 1)
    try:
        outs = [r.run(s) for s in samples]
    finally:
        r.close()
    return [np.concatenate([o[i] for o in outs]) for i in range(2)]


def _within_verify_tolerance(src: Path, dst: Path, samples, cosine_min: float) -> None:
    ref, got = _outputs(src, samples), _outputs(dst, samples)
    for r, g, name in zip(ref, got, ("logits", "embedding")):
        verify.check(verify.parity(r, g), VerifySpec(cosine_min=cosine_min), f"{dst.name} output {name}")
    np.testing.assert_array_equal(got[1], ref[1])  # the Gather still reads the untouched table


def test_int4_keeps_tied_and_shared_weights_intact(tmp_path):
    from edgekit.stages.registry import REGISTRY

    work = tmp_path / "models"
    work.mkdir()
    src = _tied(work / "fp32.onnx")
    cal = _samples(4, 1)
    state = ModelState(torch_model=None, input_names=["x", "ids"], output_names=["logits", "e"], example=cal[0],
                       workdir=work, onnx_path=src, calibration=Dataset("cal", cal, None, list(range(4))))
    stage = REGISTRY["quantize.int4"].load()()
    state, rec = stage.run(state, stage.Config(kind="quantize.int4", group_size=16))
    assert rec.measured["gemm_rewritten"] == 3 and rec.measured["matmulnbits_nodes"] == 3
    _within_verify_tolerance(src, state.artifacts[-1].path, _samples(8, 2), 0.99)


def test_gemm_to_matmul_copies_a_weight_that_others_read(tmp_path):
    from edgekit.quantize.int4 import gemm_to_matmul

    src = _tied(tmp_path / "fp32.onnx")
    model = onnx.load(str(src))
    assert gemm_to_matmul(model) == 3
    onnx.save(model, str(tmp_path / "mm.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["emb"].shape == (V, D)  # the Gather's table is not transposed under it
    _within_verify_tolerance(src, tmp_path / "mm.onnx", _samples(4, 3), 0.99999)


def test_smoothquant_scales_a_shared_weight_once_per_reader(tmp_path):
    from edgekit.quantize import smoothquant

    src = _tied(tmp_path / "fp32.onnx")
    dst = tmp_path / "smooth.onnx"
    samples = _samples(8, 4)
    for s in samples:
        s["x"][:, 5] *= 50.0  # an outlier channel, so the scales are far from 1
    info = smoothquant.apply(src, dst, samples, alpha=0.5)
    assert len(info["smoothed"]) == 3
    _within_verify_tolerance(src, dst, samples, 0.99999)
    ref, got = _outputs(src, samples), _outputs(dst, samples)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-3, atol=1e-3)


def test_int4_refuses_to_label_an_unpacked_model_int4(tmp_path):
    from edgekit.errors import StageError
    from edgekit.stages.registry import REGISTRY

    work = tmp_path / "models"
    work.mkdir()
    src = _tied(work / "fp32.onnx")
    state = ModelState(torch_model=None, input_names=["x", "ids"], output_names=["logits", "e"],
                       example=_samples(1, 0)[0], workdir=work, onnx_path=src)
    stage = REGISTRY["quantize.int4"].load()()
    with pytest.raises(StageError, match=r"no weight was packed to INT4 \(3 MatMul nodes, 3 of them excluded"):
        stage.run(state, stage.Config(kind="quantize.int4", group_size=16, exclude=["re:.*"]))
    assert state.artifacts == []
