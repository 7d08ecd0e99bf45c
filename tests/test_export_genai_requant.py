"""edgekit.export.genai_requant: the builder's fp32 graph packed by onnxruntime's block quantizer,
with a tied embedding reading the lm_head's packed blocks. Checked on a toy graph of the
builder's shape (Transpose(W) -> Gather beside MatMul(x, W)), run by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgekit.export.genai_requant import LM_HEAD, requantize  # noqa: E402


def _tied_graph(folder: Path, depth: int, vocab: int, seed: int) -> np.ndarray:
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(0, 0.05, (depth, vocab)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["W"], ["Wt"], name="/model/embed_tokens/Transpose", perm=[1, 0]),
             helper.make_node("Gather", ["Wt", "ids"], ["E"], name="/model/embed_tokens/Gather"),
             helper.make_node("MatMul", ["x", "W"], ["Y"], name=LM_HEAD)]
    graph = helper.make_graph(
        nodes, "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, depth])],
        [helper.make_tensor_value_info("E", TensorProto.FLOAT, ["n", depth]),
         helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, vocab])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    return w


# 48 / 16 = 3 and 96 / 32 = 3: an odd block count per row, the case the builder's packing breaks on
@pytest.mark.parametrize("bits,depth,block", [(4, 64, 32), (4, 48, 16), (8, 96, 32), (8, 64, 64)])
def test_the_shared_table_holds_the_lm_heads_blocks(tmp_path, bits, depth, block):
    vocab = 40
    w = _tied_graph(tmp_path / "fp32", depth, vocab, seed=bits * depth)
    info = requantize(tmp_path / "fp32", tmp_path / "q", bits, block, True, bits, accuracy_level=1)
    assert info["embedding"] == "shares the lm_head's packed blocks" and info["lm_head_bits"] == bits
    model = onnx.load(str(tmp_path / "q" / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "Transpose" not in ops and "MatMul" not in ops and ops.count("GatherBlockQuantized") == 1
    assert "W" not in {t.name for t in model.graph.initializer}  # the fp32 table is gone
    sess = ort.InferenceSession(str(tmp_path / "q" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(1, depth)).astype(np.float32)
    table, y = sess.run(["E", "Y"], {"ids": np.arange(vocab, dtype=np.int64), "x": x})
    # the embedding rows are the lm_head's dequantized columns: x @ table.T is the packed MatMul
    np.testing.assert_allclose(y, x @ table.T, rtol=1e-4, atol=1e-4)
    # and each is within one quantization step of the fp32 weight it came from
    blocks = np.abs(w.T.reshape(vocab, depth // block, block)).max(axis=2, keepdims=True)
    step = blocks / (2 ** (bits - 1))
    err = np.abs(table - w.T).reshape(vocab, depth // block, block)
    assert (err <= step + 1e-7).all()
    assert np.abs(table - w.T).max() > 0  # it was quantized


def test_an_untied_embedding_is_left_as_the_builder_wrote_it(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    emb, w = rng.normal(size=(40, 64)).astype(np.float32), rng.normal(size=(64, 40)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["E"], name="/model/embed_tokens/Gather"),
         helper.make_node("MatMul", ["E", "W"], ["Y"], name=LM_HEAD)], "untied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", 40])],
        [numpy_helper.from_array(emb, "emb"), numpy_helper.from_array(w, "W")])
    (tmp_path / "fp32").mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(tmp_path / "fp32" / "model.onnx"))
    info = requantize(tmp_path / "fp32", tmp_path / "q", 4, 32, False, 8, accuracy_level=4)
    assert info["embedding"] == "as the builder wrote it"
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node]
    assert ops == ["Gather", "MatMulNBits"]
