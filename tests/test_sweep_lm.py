"""A sweep over a causal LM's generation settings on a real local Ray cluster: each trial is an
ordinary language-model artifact, timed in decode time per token (its latency in the sweep),
with TTFT and decode tokens/s beside it and the generation profile in the trial's manifest."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.sweep_helpers import worker_path

pytest.importorskip("ray")
pytest.importorskip("onnxruntime_genai")
pytest.importorskip("openvino_genai")


def test_a_language_model_sweep_across_both_runtimes_times_decode_per_token(tmp_path, monkeypatch, tiny_llama_dir, cli):
    from tests.test_lm_pipeline import _recipe

    worker_path(monkeypatch)
    base = _recipe(tmp_path, tiny_llama_dir, [{"kind": "target.onnxruntime-genai", "precision": "int4",
                                               "block_size": 32, "name": "int4"}],
                   targets=["onnxruntime-genai", "openvino-genai"])
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "sweep": 1, "name": "tiny-lm-sweep", "base": base.name,
        "vary": {"stages": [
            [{"kind": "target.onnxruntime-genai", "precision": "int4", "block_size": 32, "name": "int4"}],
            [{"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": 64, "name": "int4"}],
        ]},
        "objective": {"minimize": "latency_p90_ms", "accuracy_drop_max": 0.5}}, sort_keys=False))
    result = cli("sweep", tmp_path / "sweep.yaml", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "out" / "tiny-lm-sweep" / "sweep.json").read_text())
    assert len(s["trials"]) == 2
    runtimes = set()
    for t in s["trials"]:
        assert t["status"] == "ok" and t["cpu_class"], t.get("error")
        (row,) = t["results"]
        runtimes.add(row["runtime"])
        assert row["metric"] == "perplexity" and row["value"] > 1 and row["latency_is"] == "decode ms per token"
        assert row["latency_p90_ms"] > 0 and row["decode_tokens_per_s"] > 0 and row["ttft_p90_ms"] > 0
        m = json.loads((tmp_path / "out" / "tiny-lm-sweep" / "trials" / t["id"] / "manifest.json").read_text())
        assert f"int4/{row['runtime']}" in m["generation"]
    assert runtimes == {"onnxruntime-genai", "openvino-genai"}
    assert s["chosen"]["local"] is not None
