"""prune.depth on tiny transformers (edgekit ViT, Hugging Face BERT and ViT from configs):
the candidates that change their input least are dropped, every score is recorded, the model
gets cheaper, and the history replays exactly on a fresh copy."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from edgekit.errors import RecipeError
from edgekit.prune import replay
from tests.test_prune_structured import _run, _tiny


def _state(tmp_path, which):
    from edgekit.stages.state import Dataset, ModelState

    model, example = _tiny(which)
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(6):
        s = {}
        for k, v in example.items():
            s[k] = rng.integers(1, 99, v.shape) if v.dtype == np.int64 and k == "input_ids" else (
                v.copy() if v.dtype == np.int64 else rng.standard_normal(v.shape).astype(np.float32))
        samples.append(s)
    return ModelState(model, list(example), ["y"], example, tmp_path, calibration=Dataset("rand", samples))


def _apply(state, **stage):
    from edgekit.stages.registry import REGISTRY

    info = REGISTRY[stage["kind"]]
    return info.load()().run(state, info.load().Config(**stage))


@pytest.mark.parametrize("which", ["vit", "bert", "hfvit"])
@pytest.mark.parametrize("unit", ["sublayer", "block"])
def test_depth_drops_least_changing_and_replays(tmp_path, which, unit):
    state = _state(tmp_path, which)
    original = state.torch_model
    fresh = copy.deepcopy(original)
    ref = _run(original, state.example)
    state, rec = _apply(state, kind="prune.depth", drop=1 if unit == "block" else 2, unit=unit, samples=6, batch=3)
    m = rec.measured
    rows = m["candidates"]
    assert len(rows) == (2 if unit == "block" else 4)  # two blocks: every candidate scored
    dropped = [r for r in rows if r["dropped"]]
    kept = [r for r in rows if not r["dropped"]]
    assert len(dropped) == (1 if unit == "block" else 2)
    assert min(r["cosine"] for r in dropped) >= max(r["cosine"] for r in kept)
    assert m["after"]["macs"] < m["before"]["macs"]
    assert _run(original, state.example).equal(ref)  # the loaded model is untouched
    out = _run(state.torch_model, state.example)
    assert out.shape == ref.shape and not torch.equal(out, ref)
    history = json.loads(json.dumps(m["history"]))
    replay(history, fresh)
    fresh.load_state_dict(state.torch_model.state_dict())
    assert torch.equal(_run(fresh, state.example), out)


def test_dropping_every_unit_is_refused(tmp_path):
    state = _state(tmp_path, "vit")
    with pytest.raises(RecipeError, match=r"drop: 4 sublayers asked for; at most 3 can go \(2 blocks, not all of them\)"):
        _apply(state, kind="prune.depth", drop=4)


def test_depth_ignore_and_parts(tmp_path):
    state = _state(tmp_path, "vit")
    state, rec = _apply(state, kind="prune.depth", drop=1, parts=["mlp"], ignore=["blocks.0"], samples=6)
    assert [(r["layer"], r["part"]) for r in rec.measured["candidates"]] == [("blocks.1", "mlp")]
    assert state.torch_model.blocks[1].mlp is None and state.torch_model.blocks[0].mlp is not None
    with pytest.raises(RecipeError, match=r"ignore: 'blocks.9' matches no block"):
        _apply(_state(tmp_path, "vit"), kind="prune.depth", drop=1, ignore=["blocks.9"])


def test_replay_of_two_stages_in_order(tmp_path):
    """structured, then depth: replaying both histories rebuilds the final architecture."""
    pytest.importorskip("torch_pruning")
    state = _state(tmp_path, "vit")
    fresh = copy.deepcopy(state.torch_model)
    state, first = _apply(state, kind="prune.structured", ratio=0.5)
    state, second = _apply(state, kind="prune.depth", drop=1, samples=6)
    histories = json.loads(json.dumps([first.measured["history"], second.measured["history"]]))
    replay(histories, fresh)
    fresh.load_state_dict(state.torch_model.state_dict())
    assert torch.equal(_run(fresh, state.example), _run(state.torch_model, state.example))
    assert fresh.blocks[0].attn.heads == 2
