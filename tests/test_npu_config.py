"""target.npu's config: precisions checked against the profile, golden one-line errors, and
where its artifacts run (the registry rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgekit.stages.registry import REGISTRY

BASE = {
    "edgekit": 1,
    "name": "npu-bad",
    "model": {"python": "edgekit.models.zoo:digits_cnn"},
    "targets": ["onnxruntime", "qnn-htp"],
}


def _recipe(tmp_path: Path, stage: dict, **top) -> Path:
    data = {**BASE, "stages": [{"kind": "export.onnx"}, {"kind": "target.npu", **stage}], **top}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.mark.parametrize("stage,line", [
    ({"profile": "qnn-htp", "weights": "int16"},
     "stages[1].weights: profile qnn-htp takes weights as uint8 or int8; got 'int16'"),
    ({"profile": "qnn-htp", "weights": "uint16"},
     "stages[1].weights: profile qnn-htp takes weights as uint8 or int8; got 'uint16'"),
    ({"profile": "intel-npu", "activations": "uint16"},
     "stages[1].activations: profile intel-npu takes activations as uint8 or int8; got 'uint16'"),
    ({"profile": "hexagon"}, "stages[1].profile: got 'hexagon'; allowed: 'qnn-htp' or 'intel-npu'"),
    ({"profile": "intel-npu", "soc_model": "57"}, "stages[1]: soc_model applies only to profile qnn-htp, not intel-npu"),
    ({"profile": "qnn-htp", "percentile": 99.9},
     "stages[1]: percentile applies only to calibration 'percentile', not 'minmax'"),
    ({"profile": "qnn-htp", "rewrites": ["fold_everything"]}, "stages[1].rewrites[0]: got 'fold_everything'"),
])
def test_bad_config_is_one_golden_line(cli, tmp_path, stage, line):
    r = cli("validate", _recipe(tmp_path, stage))
    assert r.exit_code == 2
    out = r.output.strip().splitlines()
    assert len(out) == 1, r.output
    assert out[0].startswith(f"error: {tmp_path / 'bad.yaml'}: {line}"), out[0]


def test_a_recipe_without_a_target_that_runs_the_npu_artifact_is_refused(cli, tmp_path):
    r = cli("validate", _recipe(tmp_path, {"profile": "qnn-htp"}, targets=["openvino"]))
    assert r.exit_code == 2
    assert "stages[1] (target.npu) makes artifacts that only onnxruntime, qnn-htp can run" in r.output


def test_the_stage_row_and_where_each_profile_artifact_runs():
    from edgekit.stages.state import Artifact

    info = REGISTRY["target.npu"]
    assert info.side == "backend" and info.extras == ("onnx", "npu")
    assert info.runs_on() == ("onnxruntime", "qnn-htp")
    qnn = Artifact("npu_qnn_htp", Path("m.onnx"), "qnn-onnx", "int16", "target.npu")
    intel = Artifact("npu_intel_npu", Path("m.onnx"), "onnx", "int8", "target.npu")
    assert qnn.runs_on == ("onnxruntime", "qnn-htp")
    assert "qnn-htp" not in intel.runs_on  # never the HTP: its precisions are not the HTP's
    assert {"onnxruntime", "openvino"} <= set(intel.runs_on)  # OpenVINO deploys it to the Intel NPU


def test_recipes_validate(cli):
    root = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("npu_qnn_digits.yaml", "npu_qnn_vit.yaml", "npu_qnn_minilm.yaml"):
        r = cli("validate", root / name)
        assert r.exit_code == 0, r.output
        assert "target.npu" in r.output


def test_targets_follow_the_profiles_format(cli, tmp_path):
    """intel-npu writes plain ONNX (OpenVINO alone may verify it); qnn-htp writes qnn-onnx, which
    OpenVINO does not read."""
    ok = cli("validate", _recipe(tmp_path, {"profile": "intel-npu"}, targets=["openvino"]))
    assert ok.exit_code == 0, ok.output
    bad = cli("validate", _recipe(tmp_path, {"profile": "qnn-htp"}, targets=["openvino"]))
    assert bad.exit_code == 2
    assert "stages[1] (target.npu) makes artifacts that only onnxruntime, qnn-htp can run" in bad.output
