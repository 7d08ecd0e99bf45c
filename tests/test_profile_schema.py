"""profile.json: what compress writes, what `edgekit profile` writes, and the baseline key."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import UsageError
from edgekit.profile.schema import baseline_key, load_profile
from tests.test_profile_devices import tiny_onnx


def test_compress_writes_schema_profile_and_merges_it(digits_run):
    prof = load_profile(digits_run.out_dir)
    assert set(prof.measurements) >= {"reference/pytorch", "int8/onnxruntime", "int8/openvino"}
    m = prof.measurements["int8/onnxruntime"]
    assert m.model.path == "models/int8.onnx" and m.protocol.isolation == "subprocess"
    assert len(m.samples_ms) == m.n and m.min_ms <= m.median_ms <= m.p90_ms <= m.max_ms
    assert m.energy.provenance == "unavailable" and m.energy.reason
    files = {f["path"]: f["sha256"] for f in digits_run.manifest["files"]}
    assert m.model.sha256 == files["models/int8.onnx"]
    merged = digits_run.manifest["profile"]["int8/onnxruntime"]
    assert "samples_ms" not in merged and merged["p90_upper_bound_ms"] == m.p90_upper_bound_ms
    keys = {baseline_key(x) for x in prof.measurements.values()}
    assert len(keys) == len(prof.measurements)  # model x runtime distinguishes every entry


def test_profile_cli_on_onnx_file_and_baseline_key(cli, tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    outs = []
    for extra in ([], ["--in-process"]):
        out = tmp_path / f"p{len(outs)}.json"
        r = cli("profile", model, "--warmup", "0.05", "--min-duration", "0.1", "--min-iters", "8", "-o", out, *extra)
        assert r.exit_code == 0, r.output
        outs.append(load_profile(out).measurements["tiny/onnxruntime"])
    sub, inproc = outs
    assert sub.protocol.isolation == "subprocess" and inproc.protocol.isolation == "in_process"
    assert baseline_key(sub) == baseline_key(inproc)
    assert "no meter requested" in r.output


def test_profile_cli_errors(cli, tmp_path):
    r = cli("profile", tmp_path / "nope.onnx")
    assert r.exit_code == 2 and "nope.onnx: not found" in r.output
    r = cli("profile", tiny_onnx(tmp_path / "t.onnx"), "--energy", "estimate")
    assert r.exit_code == 2 and "needs tdp_w" in r.output
    r = cli("profile", tmp_path / "t.onnx", "--energy", "rapl")
    assert r.exit_code == 4 and "RAPL" in r.output


def test_load_profile_refuses_other_schemas(tmp_path):
    p = tmp_path / "profile.json"
    p.write_text(json.dumps({"schema": 2, "measurements": {}}))
    with pytest.raises(UsageError, match="profile schema 2 is not supported; allowed: 1"):
        load_profile(p)
