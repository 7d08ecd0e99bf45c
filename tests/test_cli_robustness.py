"""Corrupted inputs through the CLI, as a user's disk or device produces them: a truncated or
foreign manifest/profile, a wrong reference .npz, missing model files, an artifact directory
from an older schema, a device answering garbage or not at all. Every one is exit 2 or 4 with
one `error:` line and no traceback. (Tests on a copy of the real digits run are `slow`.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest


def one_line(result, codes=(2, 4)) -> str:
    assert result.exit_code in codes, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def art(digits_run, tmp_path) -> Path:
    d = tmp_path / "art"
    shutil.copytree(digits_run.out_dir, d)
    return d


def _edit_manifest(d: Path, fn) -> None:
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _rehash(d: Path, rel: str) -> None:
    """Keep the manifest's sha256 true to a replaced file, so the check under test is reached."""
    def fix(m):
        for f in m["files"]:
            if f["path"] == rel:
                f["sha256"] = hashlib.sha256((d / rel).read_bytes()).hexdigest()
    _edit_manifest(d, fix)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _drop_key(section: str, key: str):
    def fn(m):
        entry = m[section][0] if isinstance(m[section], list) else m[section]
        del entry[key]
    return fn


MANIFEST_CORRUPTIONS = {
    "truncated": lambda d: _truncate(d / "manifest.json"),
    "binary": lambda d: (d / "manifest.json").write_bytes(b"\x00\xff\xfe garbage"),
    "older schema": lambda d: _edit_manifest(d, lambda m: m.update(schema=0)),
    "artifact without runs_on": lambda d: _edit_manifest(d, _drop_key("artifacts", "runs_on")),
    "artifact not among files": lambda d: _edit_manifest(d, lambda m: m["artifacts"][0].update(path="models/x.onnx")),
    "inputs without shape": lambda d: _edit_manifest(d, lambda m: m["inputs"]["x"].pop("shape")),
    "environment without cpu": lambda d: _edit_manifest(d, _drop_key("environment", "cpu")),
    "recipe without targets": lambda d: _edit_manifest(d, _drop_key("recipe", "targets")),
    "stage without kind": lambda d: _edit_manifest(d, _drop_key("stages", "kind")),
    "profile entry not an object": lambda d: _edit_manifest(d, lambda m: m["profile"].update({"int8/onnxruntime": 3})),
}


@pytest.mark.parametrize("corruption", list(MANIFEST_CORRUPTIONS))
@pytest.mark.parametrize("command", ["inspect", "verify", "report", "profile", "gate"])
def test_a_corrupted_manifest(cli, art, tmp_path, command, corruption):
    MANIFEST_CORRUPTIONS[corruption](art)
    before = (art / "manifest.json").read_bytes()
    extra = ["-o", tmp_path / "p.json"] if command == "profile" else []
    line = one_line(cli(command, art, *extra))
    assert "manifest.json" in line
    assert (art / "manifest.json").read_bytes() == before  # nothing rewritten


def _wrong_keys(d: Path) -> None:
    np.savez(d / "reference.npz", images=np.zeros((4, 8), np.float32))
    _rehash(d, "reference.npz")


def _wrong_shape(d: Path) -> None:
    np.savez(d / "reference.npz", **{"input.x": np.zeros((4, 3, 8, 8), np.float32),
                                     "output": np.zeros((4, 10), np.float32)})
    _rehash(d, "reference.npz")


def _not_npz(d: Path) -> None:
    (d / "reference.npz").write_bytes(b"PK\x03\x04 truncated zip")
    _rehash(d, "reference.npz")


def _truncated_npz(d: Path) -> None:
    _truncate(d / "reference.npz")
    _rehash(d, "reference.npz")


@pytest.mark.parametrize("corrupt", [_wrong_keys, _wrong_shape, _not_npz, _truncated_npz])
@pytest.mark.parametrize("command", ["verify", "profile", "gate --ab"])
def test_a_wrong_reference_npz(cli, art, tmp_path, command, corrupt):
    corrupt(art)
    args = {"verify": ["verify", art], "profile": ["profile", art, "-o", tmp_path / "p.json"],
            "gate --ab": ["gate", "--ab", art, art, "--rounds", "6", "--block-s", "0.01"]}[command]
    assert "reference.npz" in one_line(cli(*args))


@pytest.mark.parametrize("command", ["verify", "profile", "gate --ab"])
def test_missing_model_files(cli, art, tmp_path, command):
    (art / "models" / "int8.onnx").unlink()
    args = {"verify": ["verify", art], "profile": ["profile", art, "-o", tmp_path / "p.json"],
            "gate --ab": ["gate", "--ab", art, art, "--rounds", "6", "--block-s", "0.01"]}[command]
    assert "int8.onnx" in one_line(cli(*args))


@pytest.mark.parametrize("how", ["truncated", "binary", "not a profile", "older schema", "measurement without n"])
def test_a_corrupted_profile_json(cli, art, tmp_path, how):
    p = art / "profile.json"
    if how == "truncated":
        _truncate(p)
    elif how == "binary":
        p.write_bytes(b"\xff\xfe\x00")
    elif how == "not a profile":
        p.write_text("[1, 2, 3]")
    else:
        data = json.loads(p.read_text())
        if how == "older schema":
            data["schema"] = 0
        else:
            next(iter(data["measurements"].values())).pop("n")
        p.write_text(json.dumps(data))
    assert "profile.json" in one_line(cli("gate", art))
    assert "profile.json" in one_line(cli("gate", "--profile", p, "-r", art / "recipe.yaml", art))


def test_missing_and_non_model_files(cli, tmp_path):
    for args in (["profile", tmp_path / "nope.onnx"], ["inspect", tmp_path / "nope"], ["verify", tmp_path],
                 ["report", tmp_path], ["gate", tmp_path / "nope"]):
        one_line(cli(*args))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08garbage")
    one_line(cli("profile", bad, "-o", tmp_path / "p.json"))
    one_line(cli("profile", bad, "--backend", "openvino", "-o", tmp_path / "p.json"))
    one_line(cli("gate", "--ab", bad, bad, "--rounds", "6", "--block-s", "0.01"))


@pytest.mark.parametrize("reply,expect", [
    ('{"ok": true, "samples_ms": [1.0, 2', "not valid JSON"),
    ("{garbage", "not valid JSON"),
    ('{"ok": true}', "has no valid"),
    ('{"ok": true, "samples_ms": "fast"}', "has no valid 'samples_ms'"),
    ('{"ok": true, "samples_ms": [NaN, 1]}', "has no valid"),
    ("[1, 2]", "gave no result"),
    ("", "gave no result"),
    ("SLEEP", "did not finish within 1 s"),
])
def test_a_device_answering_garbage_or_nothing(cli, tmp_path, reply, expect):
    from test_profile_devices import tiny_onnx

    fake = tmp_path / "fake-python"
    body = "exec sleep 30" if reply == "SLEEP" else f"printf '%s\\n' '{reply}'"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    devices = tmp_path / "devices.yaml"
    devices.write_text(f"devices:\n  board: {{kind: local, python: {fake}, timeout_s: 1}}\n")
    model = tiny_onnx(tmp_path / "t.onnx")
    line = one_line(cli("profile", model, "--devices", devices, "--device", "board", "-o", tmp_path / "p.json",
                        "--warmup", "0", "--min-duration", "0", "--min-iters", "2"), codes=(4,))
    assert "device 'board'" in line and expect in line
    assert not (tmp_path / "p.json").exists()


def test_report_rewrites_an_older_manifest_holding_infinity_as_strict_json(cli, art):
    def old_sensitivity(m):
        m["stages"][-1]["measured"]["sensitivity"] = {"samples": 8, "nodes": [
            {"node": "/fc/Gemm", "sqnr_db": float("inf")}, {"node": "/c/Conv", "sqnr_db": 31.5}]}
    _edit_manifest(art, old_sensitivity)
    assert "Infinity" in (art / "manifest.json").read_text()
    r = cli("report", art)
    assert r.exit_code == 0, r.output

    def refuse(name):
        raise ValueError(name)

    m = json.loads((art / "manifest.json").read_text(), parse_constant=refuse)
    assert m["stages"][-1]["measured"]["sensitivity"]["nodes"][0] == {"node": "/fc/Gemm", "sqnr_db": None,
                                                                     "lossless": True}
    assert "∞ (lossless)" in (art / "report.md").read_text()
