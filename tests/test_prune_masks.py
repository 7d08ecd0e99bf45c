"""Pure sparsity algorithms (property tests): polynomial schedule, LAMP scores, global /
layerwise / LAMP masks, N:M masks; then the prune.magnitude / prune.nm stages on tiny models,
including a 2:4 check of every group of 4 in the exported ONNX weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgekit.prune.masks import lamp_scores, nm_mask, sparsity_masks
from edgekit.prune.schedule import polynomial

finite = st.floats(-100, 100, allow_nan=False, width=32)


@given(st.floats(0, 0.9), st.floats(0, 0.99), st.integers(1, 50), st.floats(0.5, 5))
def test_polynomial_schedule_rises_to_final(a, b, steps, power):
    initial, final = min(a, b), max(a, b)
    s = polynomial(initial, final, steps, power)
    assert len(s) == steps and s[-1] == final
    assert all(initial - 1e-12 <= v <= final + 1e-12 for v in s)
    assert all(x <= y + 1e-12 for x, y in zip(s, s[1:]))
    # front-loaded: with power >= 1 the first half of the steps does at least half of the rise
    if power >= 1 and steps >= 2:
        assert s[steps // 2 - 1] - initial >= (final - initial) * (steps // 2) / steps - 1e-9


def test_polynomial_rejects_bad_ranges():
    with pytest.raises(ValueError, match="need 0 <= initial <= final < 1"):
        polynomial(0.5, 0.2, 3)


@given(arrays(np.float32, st.integers(1, 60), elements=finite))
def test_lamp_scores(w):
    t = torch.from_numpy(w)
    s = lamp_scores(t)
    assert s.shape == t.shape
    assert bool(((s >= 0) & (s <= 1 + 1e-9)).all())
    if bool((t != 0).any()):
        # one largest weight scores 1, and a strictly larger weight scores strictly higher
        assert float(s.max()) == pytest.approx(1.0)
        a, f = t.abs().double().flatten(), s.flatten()
        i, j = int(a.argmin()), int(a.argmax())
        if a[i] < a[j]:
            assert f[i] < f[j]


@given(st.lists(arrays(np.float32, st.integers(1, 40), elements=finite), min_size=1, max_size=4),
       st.floats(0, 0.95), st.sampled_from(["global", "layerwise", "lamp"]))
def test_masks_remove_the_asked_share(ws, sparsity, method):
    weights = {f"l{i}": torch.from_numpy(w) for i, w in enumerate(ws)}
    masks = sparsity_masks(weights, sparsity, method)
    total = sum(w.numel() for w in weights.values())
    removed = sum(int((~m).sum()) for m in masks.values())
    if method == "layerwise":
        assert all(int((~masks[n]).sum()) == round(sparsity * w.numel()) for n, w in weights.items())
    else:
        assert removed == round(sparsity * total)
    # nothing kept is smaller in magnitude than something removed (per layer for layerwise/lamp)
    for n, w in weights.items():
        kept, gone = w[masks[n]].abs(), w[~masks[n]].abs()
        if kept.numel() and gone.numel():
            assert float(gone.max()) <= float(kept.min())
    if method == "lamp":  # while removals fit below every layer's top score (1), no live layer is emptied
        live = [n for n, w in weights.items() if bool((w != 0).any())]
        if removed <= total - len(live):
            assert all(bool(masks[n].any()) for n in live)


@given(st.integers(1, 6), st.sampled_from([(1, 4), (2, 4), (1, 2), (4, 8)]), st.integers(1, 3),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_nm_mask_keeps_n_largest_of_every_m(out, nm, groups, conv, seed):
    n, m = nm
    g = torch.Generator().manual_seed(seed)
    shape = (out, m * groups, 3, 3) if conv else (out, m * groups)
    w = torch.randn(shape, generator=g)
    keep = nm_mask(w, n, m)
    assert keep.shape == w.shape
    rows = (keep.permute(0, 2, 3, 1) if conv else keep).reshape(-1, m)
    vals = (w.permute(0, 2, 3, 1) if conv else w).reshape(-1, m).abs()
    assert bool((rows.sum(1) == n).all())
    for r, v in zip(rows, vals):
        assert float(v[r].min()) >= float(v[~r].max())


def test_nm_mask_needs_divisible_inputs():
    with pytest.raises(ValueError, match="input dimension 6 is not divisible by m=4"):
        nm_mask(torch.randn(3, 6), 2, 4)


# --- stages ---------------------------------------------------------------------------------


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 24)
        self.fc2 = torch.nn.Linear(24, 12)
        self.fc3 = torch.nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _state(tmp_path, model, labels=True):
    from edgekit.stages.state import Dataset, ModelState

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    y = rng.integers(0, 10, 64) if labels else None
    calib = Dataset("rand", [{"x": x[i : i + 1]} for i in range(64)], y)
    return ModelState(model, ["x"], ["logits"], {"x": x[:1]}, tmp_path, calibration=calib)


def _apply(state, **stage):
    from edgekit.stages.registry import REGISTRY

    info = REGISTRY[stage["kind"]]
    return info.load()().run(state, info.load().Config(**stage))


@pytest.mark.parametrize("method", ["global", "layerwise", "lamp"])
def test_magnitude_stage_gradual_with_finetune(tmp_path, method):
    torch.manual_seed(0)
    model = MLP().eval()
    state = _state(tmp_path, model)
    state, rec = _apply(state, kind="prune.magnitude", sparsity=0.75, method=method,
                        schedule={"steps": 3, "initial": 0.25},
                        finetune={"epochs": 1, "data": "calibration", "batch": 16, "lr": 0.01})
    assert state.torch_model is not model and all(bool((p != 0).all()) for p in model.parameters())
    targets = [s["target"] for s in rec.measured["steps"]]
    assert targets == sorted(targets) and targets[-1] == 0.75 and targets[0] > 0.25
    weights = [m.weight for m in state.torch_model.modules() if isinstance(m, torch.nn.Linear)]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zero == pytest.approx(0.75, abs=0.01)  # finetuning did not regrow pruned weights
    assert all("loss_per_epoch" in s for s in rec.measured["steps"])
    if method == "layerwise":
        assert all(abs(v - 0.75) <= 0.02 for v in rec.measured["layer_sparsity"].values())
    json.dumps(rec.model_dump())


def test_finetune_stage_keeps_earlier_zeros(tmp_path):
    torch.manual_seed(0)
    state = _state(tmp_path, MLP().eval())
    state, _ = _apply(state, kind="prune.nm", n=2, m=4)
    state, rec = _apply(state, kind="finetune", epochs=2, data="calibration", batch=16, lr=0.05)
    assert rec.measured["kept_zero_masks"] == ["fc1", "fc2", "fc3"]
    for m in state.torch_model.modules():
        if isinstance(m, torch.nn.Linear):
            assert bool(((m.weight != 0).reshape(-1, 4).sum(1) <= 2).all())


def test_finetune_without_labels_needs_distill(tmp_path):
    from edgekit.errors import DataError

    state = _state(tmp_path, MLP().eval(), labels=False)
    with pytest.raises(DataError, match="finetune.data: 'calibration' has no labels; add finetune.distill"):
        _apply(state, kind="finetune", epochs=1, data="calibration")
    state, rec = _apply(state, kind="finetune", epochs=1, data="calibration", distill={"weight": 1.0})
    assert len(rec.measured["loss_per_epoch"]) == 1


def user_data():
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((20, 16)).astype(np.float32)}, rng.standard_normal((20, 10)).astype(np.float32)


def user_loss(out, target):
    return (out - target).abs().mean()


def test_finetune_user_entrypoints(tmp_path):
    state = _state(tmp_path, MLP().eval())
    state, rec = _apply(state, kind="finetune", epochs=3, data="tests.test_prune_masks:user_data",
                        loss="tests.test_prune_masks:user_loss", lr=0.01, batch=20)
    losses = rec.measured["loss_per_epoch"]
    assert rec.measured["samples"] == 20 and losses[-1] < losses[0]


def test_nm_exported_weights_keep_2_of_4(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    state = _state(tmp_path, MLP().eval())
    state, rec = _apply(state, kind="prune.nm", n=2, m=4, ignore=["fc3"])
    assert set(rec.measured["masks"]) == {"fc1", "fc2"}
    state, _ = _apply(state, kind="export.onnx")
    inits = {tuple(a.shape): a for a in (numpy_helper.to_array(i) for i in onnx.load(str(state.onnx_path)).graph.initializer)}
    checked = 0
    for name, (fin, fout) in {"fc1": (16, 24), "fc2": (24, 12)}.items():
        w = inits[(fout, fin)] if (fout, fin) in inits else inits[(fin, fout)].T  # Gemm (out,in) or MatMul (in,out)
        groups = (w != 0).reshape(fout, fin // 4, 4).sum(-1)
        assert (groups <= 2).all() and (groups == 2).mean() > 0.99, name
        checked += 1
    assert checked == 2
    dense = inits[(10, 12)] if (10, 12) in inits else inits[(12, 10)]
    assert (dense != 0).mean() > 0.99  # the ignored layer stayed dense
