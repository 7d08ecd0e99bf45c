"""Golden one-line errors found by trying to break every command as a user would: the exact
message fragment, the exit code, no traceback, and no half-written output."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest

from tests.conftest import write_recipe


def one_line_error(result, code: int, fragment: str) -> None:
    """An EdgekitError or click usage error reaches the user as a single 'error:' line."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fragment in lines[0], lines[0]


# --- recipes --------------------------------------------------------------------------------

def mutated(data: dict, fn) -> dict:
    data = copy.deepcopy(data)
    fn(data)
    return data


EXPORT = {"kind": "export.onnx", "opset": 17}
RECIPE_CASES = [
    ("duplicate input names",
     lambda d: d.update(inputs=[{"name": "x", "shape": [1], "dtype": "float32"}] * 2),
     "inputs: input names must be unique; repeated: x"),
    ("two exports", lambda d: d.update(stages=[EXPORT, EXPORT]),
     "stages: give one 'export.onnx' stage; got 2"),
    ("typo inside a stage beats the missing field it causes",
     lambda d: d.update(stages=[{"kind": "tokens.prune", "rr": 4}, EXPORT]),
     "stages[0]: unknown key 'rr' (did you mean 'r'?)"),
    ("union member tag not in the path",
     lambda d: d.update(stages=[{"kind": "tokens.merge", "r": "many"}, EXPORT]),
     "stages[0].r: Input should be a valid integer"),
    ("union: the list branch's bad element",
     lambda d: d.update(stages=[{"kind": "tokens.merge", "r": [1, "a"]}, EXPORT]),
     "stages[0].r[1]: Input should be a valid integer, unable to parse string as an integer; got 'a'"),
    ("whole-recipe check has no <root> and no '...'",
     lambda d: d.update(stages=[EXPORT, {"kind": "tokens.merge", "r": 2}]),
     "recipe.yaml: stages: torch-side stages must come before export.onnx"),
    ("empty targets says the value once",
     lambda d: d.update(targets=[]),
     "targets: targets must be a non-empty list without repeats; got []"),
]


@pytest.mark.parametrize("label,change,message", RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_recipe_golden(cli, tmp_path, int8_pc_data, label, change, message):
    path = write_recipe(tmp_path, mutated(int8_pc_data, change))
    result = cli("validate", path)
    one_line_error(result, 2, message)
    assert "got '...'" not in result.output and "<root>" not in result.output
    assert result.output.count("got ") <= 1


def test_recipe_not_text_or_a_directory(cli, tmp_path):
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x08\x07\x12\xab\xff\x00")
    one_line_error(cli("validate", binary), 2, "model.onnx: not a text file (byte 3 is not UTF-8)")
    one_line_error(cli("compress", "-r", tmp_path), 2, f"{tmp_path}: is a directory; expected a recipe .yaml file")


# --- click usage errors ---------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (("verify",), "Missing argument 'ARTIFACT_DIR'. (see '"),
    (("verify", "x", "--threads", "0"), "Invalid value for '--threads'"),
    (("gate", "--min-effect", "abc"), "Invalid value for '--min-effect'"),
    (("nosuchcommand",), "No such command 'nosuchcommand'."),
    (("profile", "x.onnx", "--bogus"), "No such option: --bogus"),
])
def test_usage_errors_are_one_line(cli, args, message):
    result = cli(*args)
    one_line_error(result, 2, message.replace("ARTIFACT_DIR", "artifact_dir"))


# --- artifacts ------------------------------------------------------------------------------

def manifest(**over) -> dict:
    m = {"schema": 1, "name": "t", "edgekit_version": "0.1.0", "recipe_sha256": "0" * 64,
         "recipe": {"targets": ["onnxruntime"]}, "source_model": {"kind": "onnx", "ref": "m.onnx", "sha256": "0" * 64},
         "inputs": {"x": {"shape": [1, 4], "dtype": "float32"}},
         "artifacts": [{"name": "fp32", "path": "models/fp32.onnx", "format": "onnx", "precision": "fp32",
                        "runs_on": ["onnxruntime", "openvino"], "bytes": 1}],
         "files": [{"path": "models/fp32.onnx", "sha256": "0" * 64}], "stages": [], "metrics": {}, "profile": {},
         "environment": {"python": "3", "cpu": {"model": "x"}, "versions": {}}}
    m.update(over)
    return m


@pytest.mark.parametrize("content,message", [
    ("[1, 2]", "manifest.json: not an edgekit manifest: expected a JSON object, got list"),
    ("{}", "manifest.json: manifest schema None is not supported; allowed: 1"),
    (json.dumps(manifest(files={})), "manifest.json: field 'files' must be a JSON array (got dict)"),
    (json.dumps({k: v for k, v in manifest().items() if k != "metrics"}),
     "manifest.json: field 'metrics' must be a JSON object (missing)"),
])
@pytest.mark.parametrize("command", ["inspect", "verify", "report", "profile", "gate"])
def test_foreign_manifest(cli, tmp_path, content, message, command):
    (tmp_path / "manifest.json").write_text(content)
    one_line_error(cli(command, tmp_path), 2, message)


def test_verify_unknown_runtime(cli, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    one_line_error(cli("verify", tmp_path, "--runtime", "tflite"), 2,
                   "verify: --runtime 'tflite': no artifact in")
    assert "allowed: onnxruntime, openvino" in cli("verify", tmp_path, "--runtime", "tflite").output


def test_profile_missing_artifact_file(cli, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    (tmp_path / "reference.npz").write_bytes(b"")
    import numpy as np

    np.savez(tmp_path / "reference.npz", **{"input.x": np.zeros((1, 4), np.float32), "output": np.zeros((1, 2))})
    one_line_error(cli("profile", tmp_path, "-o", tmp_path / "p.json"), 2,
                   "artifact 'fp32': models/fp32.onnx listed in the manifest is missing")


# --- output paths, checked before any measuring ---------------------------------------------

def test_output_paths(cli, tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    one_line_error(cli("profile", tmp_path / "m.onnx", "-o", tmp_path), 2, f"--output {tmp_path}: is a directory")
    one_line_error(cli("profile", tmp_path / "m.onnx", "-o", a_file / "p.json"), 2,
                   f"{a_file} is a file, not a directory")
    one_line_error(cli("gate", tmp_path, "--junit", tmp_path), 2, f"--junit {tmp_path}: is a directory")
    one_line_error(cli("profile", tmp_path / "m.onnx", "--backend", "tflite"), 2,
                   "--backend 'tflite': unknown runtime; allowed: pytorch, onnxruntime, onnxruntime-cuda, "
                   "onnxruntime-tensorrt, onnxruntime-openvino, openvino, tensorrt")


# --- user code: model factories and data entrypoints ----------------------------------------

USER_CODE = textwrap.dedent("""
    import numpy as np
    import torch


    class DictNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return {"logits": self.fc(x)}


    def boom():
        raise RuntimeError("weights file corrupted")


    def dict_model():
        return DictNet()


    def small():
        return torch.nn.Sequential(torch.nn.Linear(4, 3))


    def data_raises(split):
        raise ValueError("no such split on disk")


    def data_none(split):
        return None


    def data_wrong_shape(split):
        return [({"x": np.zeros((1, 4), np.float32)}, 0), ({"x": np.zeros((1, 5), np.float32)}, 1)]


    def data_not_dict(split):
        return [np.zeros((1, 4), np.float32)]
""")


@pytest.mark.parametrize("model,data,message", [
    ("boom", None, "model.python: calling {m}:boom(**{{}}) failed: RuntimeError: weights file corrupted"),
    ("dict_model", None, "model '{m}:dict_model': forward returned dict; allowed: a tensor or a tuple/list of tensors"),
    ("small", "data_raises", "data.calibration.python: {m}:data_raises(split='train') failed: ValueError: no such split"),
    ("small", "data_none", "data.calibration.python: {m}:data_none(split='train') failed: TypeError"),
    ("small", "data_wrong_shape", "data.calibration.python: sample 1 input 'x' has shape [1, 5]; expected [1, 4]"),
    ("small", "data_not_dict", "data.calibration.python: {m}:data_not_dict(split='train'): sample 0 is ndarray"),
])
def test_user_code_failures(cli, tmp_path, monkeypatch, request, model, data, message):
    module = f"qa_user_{request.node.callspec.id.replace('-', '_').replace('[', '').replace(']', '')}"
    module = "".join(c if c.isalnum() or c == "_" else "_" for c in module)
    (tmp_path / f"{module}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = {"edgekit": 1, "name": "qa", "model": {"python": f"{module}:{model}"},
              "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
              "stages": [EXPORT], "targets": ["onnxruntime"], "accuracy": {"metric": "mse", "max_drop": 1.0}}
    if data:
        recipe["data"] = {"calibration": {"python": f"{module}:{data}", "split": "train"}}
    out = tmp_path / "out"
    one_line_error(cli("compress", "-q", "-r", write_recipe(tmp_path, recipe), "-o", out), 2, message.format(m=module))
    assert not out.exists()


def test_out_under_a_file(cli, tmp_path, int8_pc_data):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    result = cli("compress", "-q", "-r", write_recipe(tmp_path, int8_pc_data), "-o", a_file / "sub")
    one_line_error(result, 2, f"cannot create the output directory: {a_file} is a file, not a directory")


def refused_dir(tmp_path):
    """An artifact directory whose int8 model ONNX Runtime refuses (a node with no kernel), with
    hashes that match: a broken artifact, not a corrupted file."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from edgekit.artifact.files import sha256_file

    (tmp_path / "models").mkdir()
    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="odd", domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
              tmp_path / "models" / "int8.onnx")
    np.savez(tmp_path / "reference.npz", **{"input.x": np.zeros((2, 4), np.float32), "output": np.zeros((2, 4))})
    art = {"name": "int8", "path": "models/int8.onnx", "format": "onnx", "precision": "int8",
           "produced_by": "quantize.int8", "runs_on": ["onnxruntime"], "bytes": 1}
    m = manifest(artifacts=[art], files=[{"path": "models/int8.onnx", "sha256": sha256_file(tmp_path / "models" / "int8.onnx")},
                                         {"path": "reference.npz", "sha256": sha256_file(tmp_path / "reference.npz")}])
    m["recipe"]["verify"] = {}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    return tmp_path


@pytest.mark.parametrize("isolation", [[], ["--in-process"]])
def test_profile_of_a_refused_artifact_is_exit_1(cli, tmp_path, isolation):
    root = refused_dir(tmp_path)
    one_line_error(cli("profile", root, "-o", tmp_path / "p.json", "--min-duration", "0", "--min-iters", "1",
                       "--warmup", "0", *isolation), 1,
                   "profile: artifact 'int8' (models/int8.onnx, made by quantize.int8): onnxruntime refuses it")
    assert not (tmp_path / "p.json").exists()


def test_verify_of_a_refused_artifact_is_exit_1(cli, tmp_path):
    root = refused_dir(tmp_path)
    one_line_error(cli("verify", root), 1,
                   "verify: artifact 'int8' (models/int8.onnx, made by quantize.int8): onnxruntime refuses it")


def test_profile_backend_no_artifact_runs_on(cli, tmp_path):
    """--backend picks the artifacts that run on it; none is one line naming what they run on."""
    root = refused_dir(tmp_path)
    one_line_error(cli("profile", root, "--backend", "openvino", "-o", tmp_path / "p.json"), 2,
                   f"--backend openvino: no artifact in {root} runs on it; its artifacts run on onnxruntime")
