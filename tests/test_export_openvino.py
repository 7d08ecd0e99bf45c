"""target.openvino: recipe checks (no backend needed), the stage on tiny real models, and one
pipeline run that verifies the IR on OpenVINO with the recorded inference precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekit.checks import metrics
from edgekit.errors import DataError, RecipeError
from edgekit.recipe import parse_recipe

torch = pytest.importorskip("torch")


def _recipe(stage: dict, targets: list[str] | None = None) -> dict:
    data = {
        "edgekit": 1,
        "name": "ov",
        "model": {"python": "edgekit.models.zoo:digits_cnn"},
        "stages": [{"kind": "export.onnx"}, {"kind": "target.openvino", **stage}],
    }
    if targets is not None:
        data["targets"] = targets
    return data


# ------------------------------------------------------------------------------------------
# validation: one line naming the field, the value and what is allowed


def test_target_openvino_needs_openvino_in_targets():
    with pytest.raises(RecipeError) as e:
        parse_recipe(_recipe({"precision": "fp32"}), "r.yaml")
    assert str(e.value) == (
        "r.yaml: targets: stages[1] (target.openvino) makes artifacts that only openvino can run; "
        "add openvino to targets; got ['onnxruntime']"
    )
    parse_recipe(_recipe({"precision": "fp32"}, ["onnxruntime", "openvino"]), "r.yaml")


@pytest.mark.parametrize(
    "stage, message",
    [
        ({"precision": "int8", "group_size": 64}, "group_size applies only to precision int4, not int8"),
        ({"precision": "int4", "preset": "mixed"}, "preset applies only to precision int8, not int4"),
        ({"precision": "fp32", "exclude": ["a"]}, "exclude applies only to precision int8 / int8_weights / int4, not fp32"),
        ({"precision": "int4", "group_size": 48}, "group_size must be -1 (per channel) or a power of two >= 8, got 48"),
        ({"precision": "int4", "subset_size": 8}, "subset_size applies to int4 only with data_aware methods; none is set"),
        ({"precision": "int8", "smooth_quant_alpha": 1.5}, "smooth_quant_alpha must be in [0, 1] or 'off', got 1.5"),
    ],
)
def test_settings_that_do_not_fit_the_precision_are_refused(stage, message):
    with pytest.raises(RecipeError) as e:
        parse_recipe(_recipe(stage, ["openvino"]), "r.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith("r.yaml: stages[1]")


def test_unknown_precision_lists_the_allowed_ones():
    with pytest.raises(RecipeError) as e:
        parse_recipe(_recipe({"precision": "int2"}, ["openvino"]), "r.yaml")
    assert "stages[1].precision: got 'int2'; allowed: 'fp32', 'int8', 'int8_weights' or 'int4'" in str(e.value)


# ------------------------------------------------------------------------------------------
# the stage on tiny real models


class TinyAttention(torch.nn.Module):
    """One attention block plus a classifier: enough for NNCF's transformer scheme to apply."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.qkv = torch.nn.Linear(32, 96)
        self.proj = torch.nn.Linear(32, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = (q @ k.transpose(-1, -2) / 32**0.5).softmax(-1)
        h = self.norm(x + self.proj(attn @ v))
        h = h + self.ffn(h)
        return self.head(h.mean(1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from edgekit.stages.state import Dataset

    model = TinyAttention().eval()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 16, 32)).astype(np.float32) for _ in range(24)]
    path = tmp_path_factory.mktemp("tiny") / "fp32.onnx"
    torch.onnx.export(model, (torch.from_numpy(xs[0]),), str(path), input_names=["x"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(x)).numpy() for x in xs])
    return model, path, Dataset("random", [{"x": x} for x in xs], ids=list(range(len(xs)))), ref


def _state(tiny, tmp_path: Path, calibration=True):
    from edgekit.stages.state import ModelState

    model, path, data, _ = tiny
    return ModelState(torch_model=model, input_names=["x"], output_names=["logits"], example=data.samples[0],
                      workdir=tmp_path, onnx_path=path, calibration=data if calibration else None)


def _apply(state, stage: dict):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from edgekit.export.openvino import OpenVINOConfig, TargetOpenVINO

    cfg = OpenVINOConfig(kind="target.openvino", **stage)
    return TargetOpenVINO().run(state, cfg)


def _outputs(art, samples) -> np.ndarray:
    from edgekit.runtimes import open_runner

    runner = open_runner("openvino", art.path, 1, **art.options.get("openvino", {}))
    return np.concatenate([runner.run(s)[0] for s in samples])


def test_int8_picks_the_transformer_scheme_and_stays_close(tiny, tmp_path):
    state, record = _apply(_state(tiny, tmp_path), {"precision": "int8", "subset_size": 16,
                                                     "smooth_quant_alpha": 0.5, "inference_precision": "f32"})
    art = state.artifacts[-1]
    assert (art.name, art.format, art.precision, art.runs_on) == ("ov_int8", "openvino", "int8", ("openvino",))
    assert art.path.suffix == ".xml" and art.extra_files[0].suffix == ".bin" and art.extra_files[0].is_file()
    assert art.options == {"openvino": {"precision": "f32"}}
    m = record.measured
    assert m["model_type"] == "transformer" and m["model_type_reason"].startswith("auto: found")
    assert m["calibration_samples"] == 16 and m["fake_quantize_nodes"] > 0
    got = _outputs(art, tiny[2].samples)
    assert metrics.cosine_per_sample(tiny[3], got).mean() > 0.98


def test_fp32_ir_matches_torch_from_either_source(tiny, tmp_path):
    for source in ("onnx", "torch"):
        state, record = _apply(_state(tiny, tmp_path, calibration=False),
                               {"precision": "fp32", "source": source, "name": f"fp32_{source}",
                                "inference_precision": "f32"})
        got = _outputs(state.artifacts[-1], tiny[2].samples[:4])
        assert metrics.max_abs(tiny[3][:4], got) < 1e-4, source
        assert "nncf" not in record.measured


def test_int4_weights_are_stored_in_four_bits(tiny, tmp_path):
    state, record = _apply(_state(tiny, tmp_path), {"precision": "int4", "group_size": 16, "weight_mode": "sym"})
    by_type = record.measured["weight_bytes_by_type"]
    assert record.measured["mode"] == "int4_sym" and by_type.get("i4", 0) > 0
    got = _outputs(state.artifacts[-1], tiny[2].samples)
    assert metrics.cosine_per_sample(tiny[3], got).mean() > 0.9


def test_int8_without_calibration_is_a_data_error(tiny, tmp_path):
    with pytest.raises(DataError, match="precision int8 needs calibration data"):
        _apply(_state(tiny, tmp_path, calibration=False), {"precision": "int8"})


def test_subset_larger_than_the_calibration_set_is_refused(tiny, tmp_path):
    with pytest.raises(RecipeError, match="subset_size: 100 is more than the 24 calibration samples"):
        _apply(_state(tiny, tmp_path), {"precision": "int8", "subset_size": 100})


def test_exclude_pattern_matching_nothing_is_refused(tiny, tmp_path):
    with pytest.raises(RecipeError, match="exclude: pattern 're:nothing.*' matches no node"):
        _apply(_state(tiny, tmp_path), {"precision": "int8", "exclude": ["re:nothing.*"]})


# ------------------------------------------------------------------------------------------
# through the pipeline: verified, evaluated and profiled on OpenVINO only


@pytest.mark.slow
def test_pipeline_verifies_the_ir_on_openvino(tiny, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from conftest import fast_profile, write_recipe

    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    _, onnx_path, data, _ = tiny
    np.savez(tmp_path / "x.npz", x=np.concatenate([s["x"] for s in data.samples]))
    recipe = fast_profile({
        "edgekit": 1, "name": "tiny-ov", "model": {"onnx": str(onnx_path)},
        "data": {"calibration": {"npz": "x.npz"}, "evaluation": {"npz": "x.npz"}},
        "stages": [{"kind": "target.openvino", "precision": "int8", "inference_precision": "f32"}],
        "targets": ["onnxruntime", "openvino"],
        "verify": {"cosine_min": 0.95},
    })
    result = run(load_recipe(write_recipe(tmp_path, recipe)), tmp_path / "out")
    man = result.manifest
    art = next(a for a in man["artifacts"] if a["name"] == "ov_int8")
    assert art["format"] == "openvino" and art["runtime_options"] == {"openvino": {"precision": "f32"}}
    assert set(man["metrics"]["ov_int8"]) == {"openvino"}
    assert man["metrics"]["ov_int8"]["openvino"]["parity"]["cosine_mean"] >= 0.95
    assert {"artifact": "ov_int8", "runtime": "onnxruntime", "reason": "openvino does not run on onnxruntime"} \
        in man["skipped"]
    assert {f["path"] for f in man["files"]} >= {"models/ov_int8.xml", "models/ov_int8.bin"}
    assert yaml.safe_load((result.out_dir / "recipe.yaml").read_text())["stages"][0]["kind"] == "target.openvino"


@pytest.mark.parametrize("name", ["minilm_int8_openvino.yaml", "minilm_int4.yaml"])
def test_openvino_recipes_validate(name):
    from conftest import RECIPES

    from edgekit.recipe import load_recipe

    recipe = load_recipe(RECIPES / name).recipe
    stages = [s for s in recipe.stages if s.kind == "target.openvino"]
    assert stages and "openvino" in recipe.targets and recipe.data.calibration is not None
    assert {s.precision for s in stages} <= {"int8", "int8_weights", "int4"}
