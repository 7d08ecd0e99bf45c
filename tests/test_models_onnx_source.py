"""ONNX files from older exporters (opset 9, IR 3, every initializer listed as a graph input,
weights computed by ConstantOfShape): normalised before any stage, fed only their real inputs,
and a graph edgekit made that a runtime refuses is a stage failure (exit 1) naming the node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_recipe

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def old_cnn(path: Path, seed: int = 0, constant_of_shape: bool = False) -> Path:
    """Conv + BatchNormalization twice, then a Gemm head with bias, written as the exporters of
    2017-2018 did: opset 9, IR 3, every initializer also a graph input. With `constant_of_shape`
    the Gemm bias is computed, as in onnx's backend test models, by ConstantOfShape of an int64
    `fc_b__SHAPE` initializer."""
    rng = np.random.default_rng(seed)

    def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    inits = [
        init("conv1_w", rng.normal(0, (2 / 27) ** 0.5, (8, 3, 3, 3))), init("conv1_b", rng.normal(0, 0.1, 8)),
        init("bn1_scale", rng.uniform(0.5, 1.5, 8)), init("bn1_bias", rng.normal(0, 0.1, 8)),
        init("bn1_mean", rng.normal(0, 0.1, 8)), init("bn1_var", rng.uniform(0.5, 1.5, 8)),
        init("conv2_w", rng.normal(0, (2 / 72) ** 0.5, (16, 8, 3, 3))),
        init("bn2_scale", rng.uniform(0.5, 1.5, 16)), init("bn2_bias", rng.normal(0, 0.1, 16)),
        init("bn2_mean", rng.normal(0, 0.1, 16)), init("bn2_var", rng.uniform(0.5, 1.5, 16)),
        init("fc_w", rng.normal(0, (2 / 64) ** 0.5, (10, 64))),
        numpy_helper.from_array(np.array([1, 64], np.int64), "flat_shape"),
    ]
    nodes = []
    if constant_of_shape:
        inits.append(numpy_helper.from_array(np.array([10], np.int64), "fc_b__SHAPE"))
        nodes.append(helper.make_node("ConstantOfShape", ["fc_b__SHAPE"], ["fc_b"], name="fc_b_fill",
                                      value=numpy_helper.from_array(np.array([0.25], np.float32))))
    else:
        inits.append(init("fc_b", rng.normal(0, 0.1, 10)))
    nodes += [
        helper.make_node("Conv", ["x", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1_scale", "bn1_bias", "bn1_mean", "bn1_var"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn2_scale", "bn2_bias", "bn2_mean", "bn2_var"], ["b2"], name="bn2"),
        helper.make_node("Relu", ["b2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Reshape", ["p2", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])]
    inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "old_cnn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="old-exporter")
    model.ir_version = 3
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def images(n: int, seed: int) -> np.ndarray:
    """Smooth image-like inputs: an 4x4 random grid upsampled to 16x16, plus a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 3, 4, 4)).astype(np.float32)
    return (coarse.repeat(4, axis=2).repeat(4, axis=3) + rng.normal(0, 0.05, (n, 3, 16, 16))).astype(np.float32)


def old_recipe(tmp_path: Path, targets: list[str], **model_kw: bool) -> Path:
    model = old_cnn(tmp_path / "old.onnx", **model_kw)
    np.savez(tmp_path / "cal.npz", x=images(32, 1))
    np.savez(tmp_path / "eval.npz", x=images(32, 2))
    data = {
        "edgekit": 1, "name": "old-cnn",
        "model": {"onnx": model.name},
        "data": {"calibration": {"npz": "cal.npz"}, "evaluation": {"npz": "eval.npz"}},
        "stages": [{"kind": "quantize.int8", "weights": {"granularity": "per_channel"}}],
        "targets": targets,
        "profile": {"enabled": False},
    }
    return write_recipe(tmp_path, data)


def test_old_cnn_static_int8_per_channel_on_ort_and_openvino(cli, tmp_path):
    pytest.importorskip("openvino")
    result = cli("compress", "--recipe", old_recipe(tmp_path, ["onnxruntime", "openvino"]), "--out", tmp_path / "out",
                 "--quiet")
    assert result.exit_code == 0, result.output
    root = tmp_path / "out" / "old-cnn"
    m = json.loads((root / "manifest.json").read_text())
    norm = m["source_model"]["normalization"]
    assert norm["from"] == {"opset": 9, "ir": 3} and norm["to"]["opset"] == 13 and norm["to"]["ir"] >= 7
    assert [s["step"] for s in norm["steps"]] == ["initializer_inputs", "opset", "fold"]
    assert all(s["parity"]["ok"] and s["parity"]["cosine_min"] > 0.9999 for s in norm["steps"])
    assert norm["notes"] == []
    assert "needed by stages[0] (quantize.int8)" in norm["steps"][1]["did"]
    fp32 = onnx.load(str(root / "models" / "fp32.onnx"))
    assert [i.name for i in fp32.graph.input] == ["x"]  # initializers no longer listed as inputs
    q = onnx.load(str(root / "models" / "int8.onnx"))
    inits = {i.name: i for i in q.graph.initializer}
    per_channel = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and len(inits.get(n.input[1], onnx.TensorProto()).dims)]
    assert per_channel, "per-channel weights (a scale vector per output channel) expected"
    measured = m["stages"][0]["measured"]  # auto measured the safe schemes: U8U8 or 7-bit/run-time U8S8
    assert measured["scheme"] == ("U8U8" if measured["overflow_fix"] == "u8u8" else "U8S8")
    for rt in ("onnxruntime", "openvino"):  # within the default verify tolerance (cosine_min 0.99)
        par = m["metrics"]["int8"][rt]["parity"]
        assert par["cosine_mean"] >= 0.99, (rt, par)
        assert m["metrics"]["fp32"][rt]["parity"]["cosine_mean"] > 0.999  # OpenVINO runs bf16 on AMX CPUs


def test_constant_of_shape_weights_calibrate_on_real_inputs(cli, tmp_path):
    """The onnx backend test models compute weights from `*__SHAPE` initializers; the calibrator
    used to feed every name onnxruntime listed and failed with KeyError: 'fc_b__SHAPE'."""
    path = old_recipe(tmp_path, ["onnxruntime"], constant_of_shape=True)
    result = cli("compress", "--recipe", path, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "out" / "old-cnn" / "manifest.json").read_text())
    fold = m["source_model"]["normalization"]["steps"][-1]
    assert fold["step"] == "fold" and fold["parity"]["ok"]
    fp32 = onnx.load(str(tmp_path / "out" / "old-cnn" / "models" / "fp32.onnx"))
    assert "ConstantOfShape" not in {n.op_type for n in fp32.graph.node}
    assert m["metrics"]["int8"]["onnxruntime"]["parity"]["cosine_mean"] >= 0.99


def test_real_inputs_one_rule_for_graph_and_session(tmp_path):
    from edgekit.runtimes.device_side import feed_names
    from edgekit.sources.onnx_file import real_inputs

    path = old_cnn(tmp_path / "old.onnx", constant_of_shape=True)
    model = onnx.load(str(path))
    assert len(model.graph.input) == 15
    assert [i.name for i in real_inputs(model.graph)] == ["x"]
    for ir in (3, 4):  # IR >= 4: onnxruntime lists the initializer-backed inputs as overridable
        model.ir_version = ir
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert feed_names(sess) == ["x"]


def test_refused_graph_is_a_stage_failure_naming_the_node(cli, tmp_path, monkeypatch):
    """Without the opset upgrade, per-channel DequantizeLinear (axis) lands in an opset-9 graph that
    onnxruntime refuses: exit 1 naming the stage and the node, not exit 2 (bad input)."""
    import edgekit.sources.onnx_file as src

    monkeypatch.setattr(src, "stage_opset", lambda cfg: 0)
    result = cli("compress", "--recipe", old_recipe(tmp_path, ["onnxruntime"]), "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "stages[0] (quantize.int8) made int8.onnx, which onnxruntime refuses at node '" in line
    assert "(DequantizeLinear): Unrecognized attribute: axis for operator DequantizeLinear" in line
    assert not (tmp_path / "out" / "old-cnn").exists()


def test_refusal_inside_a_stage_is_a_stage_failure():
    from edgekit.errors import ModelLoadError, StageError
    from edgekit.runtimes.refusal import describe, is_refusal, refused_in_stage

    node = helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="w_dq", axis=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("q", TensorProto.INT8, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [numpy_helper.from_array(np.ones(4, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    with pytest.raises(Exception) as info:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    where, reason = describe(str(info.value))
    assert where == " at node 'w_dq' (DequantizeLinear)"
    assert reason.startswith("Unrecognized attribute: axis")
    try:
        raise ModelLoadError("onnxruntime: cannot load /tmp/x/.int8.trial.onnx: ...") from info.value
    except ModelLoadError as exc:
        assert is_refusal(exc)
        err = refused_in_stage("stages[1] (quantize.int8)", exc)
    assert isinstance(err, StageError) and err.exit_code == 1
    assert str(err).startswith("stages[1] (quantize.int8) failed: onnxruntime refuses a graph it made at node 'w_dq'")
    assert not is_refusal(ModelLoadError("model.onnx: file not found: x.onnx"))


def _normalize(tmp_path: Path, need: int = 13) -> dict:
    from edgekit.sources.onnx_file import normalize, parity_samples

    src = old_cnn(tmp_path / "old.onnx")
    example = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    return normalize(src, tmp_path / "fp32.onnx", need, "stages[0] (quantize.int8)", parity_samples(example, []))


def test_a_step_that_breaks_parity_is_undone_in_one_line(tmp_path, monkeypatch):
    import edgekit.sources.onnx_file as src

    real_fold = src._fold

    def bad_fold(model):
        folded, did = real_fold(model)
        w = next(i for i in folded.graph.initializer if i.name == "fc_w")
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.1, "fc_w"))
        return folded, did

    monkeypatch.setattr(src, "_fold", bad_fold)
    rec = _normalize(tmp_path)
    assert [s["step"] for s in rec["steps"]] == ["initializer_inputs", "opset"]
    assert len(rec["notes"]) == 1 and rec["notes"][0].startswith("fold: undone: parity lost (onnxslim: ")
    assert rec["to"] == {"opset": 13, "ir": 7}
    out = onnx.load(str(tmp_path / "fp32.onnx"))
    assert "BatchNormalization" in {n.op_type for n in out.graph.node}  # the unfolded graph was kept


def test_an_opset_upgrade_that_cannot_be_done_says_why(tmp_path, monkeypatch):
    def refuse(model, target):
        raise RuntimeError("No Adapter For Upsample")

    monkeypatch.setattr(onnx.version_converter, "convert_version", refuse)
    rec = _normalize(tmp_path)
    assert "opset: could not be done: RuntimeError: No Adapter For Upsample" in rec["notes"]
    assert rec["to"]["opset"] == 9


def test_a_current_graph_is_left_byte_identical_when_nothing_changes(tmp_path):
    """Normalising a normalised graph does nothing: fp32.onnx is a byte copy of the source."""
    from edgekit.sources.onnx_file import normalize, parity_samples

    src = old_cnn(tmp_path / "old.onnx")
    first = normalize(src, tmp_path / "a.onnx", 13, "test", parity_samples({"x": np.zeros((1, 3, 16, 16), np.float32)}, []))
    assert first["notes"] == []
    second = normalize(tmp_path / "a.onnx", tmp_path / "b.onnx", 13, "test",
                       parity_samples({"x": np.zeros((1, 3, 16, 16), np.float32)}, []))
    assert second["from"] == first["to"] and second["to"] == first["to"]
    assert second["steps"] == [] and second["notes"] == []
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()


def test_runner_and_calibrator_feed_only_real_inputs(tmp_path):
    """The runners (verify, evaluate, profile, sensitivity, gate A/B) and the calibrator take
    their feed names from the same rule: an IR 4 graph listing its initializers as (overridable)
    inputs is fed `x` alone."""
    from edgekit.quantize.calibrate import exposing_session
    from edgekit.runtimes import open_runner

    model = onnx.load(str(old_cnn(tmp_path / "old.onnx")))
    model.ir_version = 4
    path = tmp_path / "ir4.onnx"
    onnx.save(model, str(path))
    runner = open_runner("onnxruntime", path, 1)
    try:
        assert runner.input_names == ["x"]
        assert runner.run({"x": images(1, 0)})[0].shape == (1, 10)
    finally:
        runner.close()
    _, names = exposing_session(path, ["c1"], 1)
    assert names == ["x"]


def test_an_undone_step_is_one_line_on_the_console_and_in_the_report(cli, tmp_path, monkeypatch):
    import edgekit.sources.onnx_file as src

    def bad_fold(model):
        raise RuntimeError("onnxslim: shape inference failed")

    monkeypatch.setattr(src, "_fold", bad_fold)
    result = cli("compress", "--recipe", old_recipe(tmp_path, ["onnxruntime"]), "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert "note: model.onnx normalisation: fold: could not be done: RuntimeError: onnxslim: shape inference failed\n" \
        in result.output
    report = (tmp_path / "out" / "old-cnn" / "report.md").read_text()
    assert "## Source normalisation" in report and "opset 9 / IR 3 → opset 13 / IR 7" in report
    assert "- not done: fold: could not be done" in report


def test_a_refusal_after_a_failed_opset_upgrade_says_so(cli, tmp_path, monkeypatch):
    import edgekit.sources.onnx_file as src

    def refuse(model, need, why):  # onnxruntime's quantizer calls the converter too: patch ours only
        raise RuntimeError("No Adapter For Upsample")

    monkeypatch.setattr(src, "_upgrade_opset", refuse)
    result = cli("compress", "--recipe", old_recipe(tmp_path, ["onnxruntime"]), "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1, result.output
    assert "which onnxruntime refuses at node '" in result.output
    assert "(source normalisation: opset: could not be done: RuntimeError: No Adapter For Upsample)" in result.output


def test_benchmark_models_are_built_offline_as_old_exporters_wrote_them():
    """benchmarks/old_onnx.py's realistic SqueezeNet: opset 9, IR 3, every initializer a graph
    input, random weights in place of the ConstantOfShape fills, logits as the output."""
    from benchmarks.old_onnx import LIGHT, realistic

    if not (LIGHT / "light_squeezenet.onnx").is_file():
        pytest.skip("the onnx package ships no backend test data here")
    model = realistic("squeezenet")
    g = model.graph
    assert model.ir_version == 3 and model.opset_import[0].version == 9
    assert {i.name for i in g.initializer} <= {i.name for i in g.input}
    assert not any(n.op_type in ("ConstantOfShape", "Softmax") for n in g.node)
    w = numpy_helper.to_array(next(i for i in g.initializer if i.name == "conv1_w_0"))
    assert w.std() > 0.05  # He-normal, not a constant fill


def test_an_openvino_refusal_quotes_its_last_line(tmp_path):
    """OpenVINO prefixes its reason with `Exception from src/...` lines: the refusal quotes the
    reason, and a refusal of a graph a stage made is that stage's failure (exit 1, not 4)."""
    from edgekit.errors import ModelLoadError, StageError
    from edgekit.runtimes.refusal import open_artifact
    from edgekit.stages.state import Artifact

    pytest.importorskip("openvino")
    bad = tmp_path / "int8.onnx"
    bad.write_bytes(b"not an onnx file")
    art = Artifact("int8", bad, "onnx", "int8", "quantize.int8")
    with pytest.raises(StageError) as info:
        open_artifact("openvino", art, 1, [])
    msg = str(info.value)
    assert msg.startswith("quantize.int8 made int8.onnx, which openvino refuses: ")
    assert "Exception from" not in msg and info.value.exit_code == 1
    src = Artifact("fp32", bad, "onnx", "fp32", "source")
    with pytest.raises(ModelLoadError):  # the user's own file: bad input (exit 2), as on ONNX Runtime
        open_artifact("openvino", src, 1, [])
