"""quantize.weight_only: INC's RTN / GPTQ on the torch model of a causal LM, its integers placed
as they are in both generation runtimes (checked by reading each artifact's files back), with
per-layer bits, and one-line refusals of settings that cannot work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neural_compressor")
pytest.importorskip("onnxruntime_genai")
pytest.importorskip("openvino_genai")

from tests.test_lm_pipeline import _recipe  # noqa: E402

CALIB = {"builtin": "pydoc_topics", "split": "train", "seq_len": 64, "samples": 4}
WO = {"kind": "quantize.weight_only", "algorithm": "gptq", "bits": 4, "group_size": 32}
ORT_INT4 = {"kind": "target.onnxruntime-genai", "name": "int4", "precision": "int4", "block_size": 32,
            "int8_layers": ["lm_head"]}
OV_INT4 = {"kind": "target.openvino-genai", "name": "ov_int4", "weights": "int4_sym"}
FLOAT_LAYER = "model.layers.1.self_attn.o_proj"


def _lm_recipe(tmp_path: Path, model_dir: Path, stages: list[dict], calibration: bool = True) -> Path:
    import yaml

    path = _recipe(tmp_path, model_dir, stages, targets=["onnxruntime-genai", "openvino-genai"],
                   verify={"emulate": False}, profile={"enabled": False})
    data = yaml.safe_load(path.read_text())
    if calibration:
        data["data"]["calibration"] = CALIB
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def wo_run(tmp_path_factory, tiny_llama_dir):
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("weight_only")
    stage = {**WO, "layers": [{"match": "re:.*down_proj", "bits": 8}, {"match": FLOAT_LAYER, "bits": 16}]}
    return run(load_recipe(_lm_recipe(tmp, tiny_llama_dir, [stage, ORT_INT4, OV_INT4])), tmp / "out")


def _records(run) -> dict:
    return {s["kind"]: s["measured"] for s in run.manifest["stages"]}


def test_gptq_integers_reach_both_runtimes_and_are_read_back_equal(wo_run):
    rec = _records(wo_run)
    wo = rec["quantize.weight_only"]
    assert wo["layers_by_bits"] == {"4": 11, "8": 2, "16": 1} and wo["float_layers"] == [FLOAT_LAYER]
    assert wo["calibration_windows"] == 4
    ort, ov = rec["target.onnxruntime-genai"], rec["target.openvino-genai"]
    assert ort["weights_from"].startswith("neural-compressor") and ort["integers_read_back_equal"] == 13
    assert ort["float_kept_nodes"] == ["/model/layers.1/attn/o_proj/MatMul"]
    assert ov["placed_matmuls"] == 13 and ov["integers_read_back_equal"] == 13
    assert ov["weight_matrices_by_type"]["i4"] == 11 and ov["weight_matrices_by_type"]["i8"] == 2
    arts = {a["name"]: a for a in wo_run.manifest["artifacts"]}
    assert arts["int4"]["precision"] == "mixed" and arts["ov_int4"]["precision"] == "mixed"
    assert set(wo_run.manifest["metrics"]) >= {"int4", "ov_int4"}


def _ort_ints(model_path: Path, node: str, k: int) -> np.ndarray:
    import onnx
    from onnx import helper, numpy_helper

    from edgekit.quantize.lm_layers import unpack_nibbles

    model = onnx.load(str(model_path))
    n = next((x for x in model.graph.node if x.name == node), None)
    assert n is not None, [x.name for x in model.graph.node if "MatMul" in x.op_type]
    bits = next(helper.get_attribute_value(a) for a in n.attribute if a.name == "bits")
    blob = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == n.input[1]))
    rows = blob.reshape(blob.shape[0], -1)
    return (unpack_nibbles(rows, k) if bits == 4 else rows).astype(np.int16) - 2 ** (bits - 1)


def _ov_ints(xml: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    import openvino as ov

    from edgekit.quantize.lm_layers import unpack_nibbles

    const = next(op for op in ov.Core().read_model(str(xml)).get_ops() if op.get_friendly_name() == name)
    raw = np.frombuffer(const.get_data(), np.uint8)
    if const.get_output_element_type(0).get_type_name() == "i4":
        nib = unpack_nibbles(raw.reshape(1, -1), shape[0] * shape[1]).reshape(shape).astype(np.int16)
        return np.where(nib > 7, nib - 16, nib)
    return raw.view(np.int8).reshape(shape).astype(np.int16)


def test_the_same_integers_sit_in_the_onnx_file_and_the_openvino_ir(wo_run):
    """Read from the shipped files, not from the stage's memory: the two runtimes run one
    quantization, not two."""
    models = wo_run.out_dir / "models"
    for layer, k in (("mlp/gate_proj", 128), ("mlp/down_proj", 256)):  # 4-bit and 8-bit (override)
        ort = _ort_ints(models / "int4" / "model.onnx", f"/model/layers.0/{layer}/MatMulNBits", k)
        ovi = _ov_ints(models / "ov_int4" / "openvino_model.xml", f"model.layers.0.{layer.replace('/', '.')}.weight",
                       ort.shape)
        assert ort.shape[1] == k and np.array_equal(ort, ovi), layer


def test_all_layers_puts_the_embeddings_and_lm_head_at_int4_beside_the_placed_integers(tmp_path, tiny_llama_dir):
    """What quantize.weight_only leaves (embeddings, lm_head) goes to NNCF's int4 at the stage's
    group instead of int8: the placed integers stay INC's, and nothing is left at 8 bits."""
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    stages = [{**WO, "algorithm": "rtn"}, {**OV_INT4, "all_layers": True, "group_size": 32}]
    recipe = _recipe(tmp_path, tiny_llama_dir, stages, targets=["openvino-genai"], verify={"emulate": False},
                     profile={"enabled": False})
    result = run(load_recipe(recipe), tmp_path / "out")
    ov = _records(result)["target.openvino-genai"]
    assert ov["embeddings_and_lm_head"] == "int4_sym group 32"
    assert ov["placed_matmuls"] == 14 and ov["integers_read_back_equal"] == 14
    # 14 placed matrices, the embeddings and the lm_head (untied in this model): all 4-bit
    assert ov["weight_matrices_by_type"] == {"i4": 16}
    import openvino as ov_rt

    model = ov_rt.Core().read_model(str(result.out_dir / "models" / "ov_int4" / "openvino_model.xml"))
    types = {op.get_friendly_name(): op.get_output_element_type(0).get_type_name() for op in model.get_ops()
             if op.get_type_name() == "Constant"}
    assert types["self.model.lm_head.weight"] == types["self.model.model.embed_tokens.weight"] == "i4"


def test_after_weight_only_the_ort_block_needs_to_divide_the_hidden_size_only(tmp_path):
    """The ORT target's block_size reaches only the lm_head after quantize.weight_only: a block
    that divides the hidden size (128) but not the intermediate size (272) builds, and the
    lm_head is packed at it beside INC's group-16 integers."""
    import onnx

    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.lm_helpers import tiny_lm_dir

    model_dir = tiny_lm_dir(tmp_path / "odd", "llama", intermediate_size=272)
    stages = [{**WO, "algorithm": "rtn", "group_size": 16}, {**ORT_INT4, "int8_layers": []}]
    result = run(load_recipe(_lm_recipe(tmp_path, model_dir, stages, calibration=False)), tmp_path / "out")
    assert _records(result)["target.onnxruntime-genai"]["integers_read_back_equal"] == 14
    graph = onnx.load(str(result.out_dir / "models" / "int4" / "model.onnx"), load_external_data=False).graph
    blocks = {n.name: {a.name: a.i for a in n.attribute}["block_size"] for n in graph.node if n.op_type == "MatMulNBits"}
    assert blocks.pop("/lm_head/MatMul_Q4") == 32
    assert blocks and set(blocks.values()) == {16}


def test_an_override_that_matches_no_layer_is_one_line_and_writes_nothing(tmp_path, tiny_llama_dir, cli):
    stage = {**WO, "algorithm": "rtn", "layers": [{"match": "re:.*dwon_proj", "bits": 8}]}
    recipe = _lm_recipe(tmp_path, tiny_llama_dir, [stage, ORT_INT4], calibration=False)
    res = cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    line = [ln for ln in res.output.splitlines() if "dwon_proj" in ln]
    assert line and "lm.yaml: stages[0].layers[0].match: 're:.*dwon_proj' matches no linear layer" in line[0]
    assert "model.layers.0.self_attn.q_proj" in line[0]
    assert not (tmp_path / "out" / "tiny-lm").exists()


def test_gptq_without_calibration_text_is_one_data_error(tmp_path, tiny_llama_dir):
    from edgekit.errors import DataError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    recipe = _lm_recipe(tmp_path, tiny_llama_dir, [WO, ORT_INT4], calibration=False)
    with pytest.raises(DataError, match="quantize.weight_only: gptq needs calibration text: set data.calibration"):
        run(load_recipe(recipe), tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-lm").exists()


@pytest.mark.parametrize("stages, message", [
    ([ORT_INT4, WO], "stages[1] (quantize.weight_only): give one, before the targets"),
    ([WO, {"kind": "target.onnxruntime-genai", "precision": "fp32"}],
     "no target after it has integer weights to take its result"),
    ([WO, {**ORT_INT4, "algorithm": "rtn"}], "stages[1] (target.onnxruntime-genai): algorithm 'rtn' is the builder's own"),
    ([WO, {**OV_INT4, "data_aware": ["awq"]}], "stages[1] (target.openvino-genai): data_aware is a setting of NNCF's own"),
    ([WO, {**OV_INT4, "group_size": 32}],
     "stages[1] (target.openvino-genai): group_size applies to the embeddings and lm_head with all_layers: true"),
    ([{**WO, "group_size": 48}, ORT_INT4], "group_size must be one of 16, 32, 64, 128, 256"),
    ([{**WO, "layers": [{"match": "re:(", "bits": 8}]}, ORT_INT4], "invalid regex 're:('"),
    ([{**WO, "bits": 3}, ORT_INT4], "bits"),
])
def test_bad_weight_only_recipes_are_one_recipe_line(tmp_path, tiny_llama_dir, stages, message):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    with pytest.raises(RecipeError) as exc:
        load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, stages))
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_group_that_does_not_divide_a_layer_is_refused_before_inc_runs(tmp_path, tiny_llama_dir):
    from edgekit.errors import RecipeError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    recipe = _lm_recipe(tmp_path, tiny_llama_dir, [{**WO, "algorithm": "rtn", "group_size": 256}, ORT_INT4],
                        calibration=False)
    with pytest.raises(RecipeError, match="group_size: 256 does not divide"):
        run(load_recipe(recipe), tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-lm").exists()
