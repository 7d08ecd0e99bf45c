"""Property tests of the pure token-reduction algorithms (edgekit/tokens/merge.py, prune.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.tokens.merge import Tokens, max_r, merge_step, restore, schedule, token_counts
from edgekit.tokens.prune import prune_step

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def token_batches(draw):
    n = draw(st.integers(3, 40))
    b = draw(st.integers(1, 3))
    c = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=gen)
    x[:, 0] = 100.0 + torch.arange(c, dtype=torch.float32)  # a recognisable class token
    metric = torch.randn(b, n, c, generator=gen)
    return x, metric


@SETTINGS
@given(token_batches())
def test_r0_is_identity(batch):
    x, metric = batch
    t = Tokens.start(x, track_source=True)
    for out in (merge_step(t, metric, 0), prune_step(t, metric[:, 1:, 0], 0)):
        assert torch.equal(out.x, x)
        assert torch.equal(out.source, t.source)


@SETTINGS
@given(token_batches(), st.data())
def test_merge_removes_exactly_r_keeps_class_first_and_conserves_size(batch, data):
    x, metric = batch
    n = x.shape[1]
    r = data.draw(st.integers(0, max_r(n, 1)))
    out = merge_step(Tokens.start(x, track_source=True), metric, r, protected=1)
    assert out.x.shape == (x.shape[0], n - r, x.shape[2])
    assert torch.equal(out.x[:, 0], x[:, 0])
    assert torch.allclose(out.size.sum(dim=(1, 2)), torch.full((x.shape[0],), float(n)))
    assert int(out.source.max()) < n - r
    assert restore(out.x, out.source).shape == x.shape


@SETTINGS
@given(token_batches(), st.data())
def test_prune_removes_exactly_r_keeps_class_first_and_conserves_size(batch, data):
    x, metric = batch
    n = x.shape[1]
    r = data.draw(st.integers(0, n - 3))
    score = metric[:, 1:, 0].softmax(-1)
    out = prune_step(Tokens.start(x, track_source=True), score, r, protected=1)
    assert out.x.shape == (x.shape[0], n - r, x.shape[2])
    assert torch.equal(out.x[:, 0], x[:, 0])
    assert torch.allclose(out.size.sum(dim=(1, 2)), torch.full((x.shape[0],), float(n)))
    assert restore(out.x, out.source).shape == x.shape


@SETTINGS
@given(token_batches(), st.lists(st.integers(0, 6), min_size=1, max_size=5))
def test_repeated_merges_follow_schedule_and_restore_maps_every_token(batch, removed):
    x, metric = batch
    n = x.shape[1]
    t = Tokens.start(x, track_source=True)
    counts = []
    for r in removed:
        if r > max_r(t.x.shape[1], 1):
            break
        t = merge_step(t, torch.randn_like(t.x), r)
        counts.append(t.x.shape[1])
    assert counts == token_counts(n, removed[: len(counts)])
    assert torch.allclose(t.size.sum(dim=(1, 2)), torch.full((x.shape[0],), float(n)))
    full = restore(t.x, t.source)
    assert full.shape == x.shape
    # the class token is never merged: it restores to itself
    assert torch.equal(full[:, 0], x[:, 0])
    # every original token maps to a current token whose size counts it
    counts_per_token = torch.zeros(t.size.shape[:2]).scatter_add(1, t.source, torch.ones_like(t.source, dtype=torch.float32))
    assert torch.allclose(counts_per_token, t.size.squeeze(-1))


def test_merge_is_a_size_weighted_mean_of_identical_tokens():
    # two identical non-class tokens must merge with each other and keep their value
    x = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    out = merge_step(Tokens.start(x, track_source=True), x, 1)
    assert out.x.shape[1] == 3
    assert torch.allclose(restore(out.x, out.source)[0, 1:3], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert sorted(out.size.flatten().tolist()) == [1.0, 1.0, 2.0]


def test_padding_merges_first_and_adds_no_weight():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 10, 4, generator=gen)
    size = torch.tensor([[1.0] * 6 + [0.0] * 4]).unsqueeze(-1)
    t = Tokens(x * size, size, Tokens.start(x, True).source)
    out = merge_step(t, torch.randn(1, 10, 4, generator=gen), 3, mask_aware=True)
    full = restore(out.x, out.source)
    # every real token keeps its exact features: only padding was merged
    assert torch.allclose(full[0, :6], x[0, :6], atol=1e-6)
    assert float(out.size.sum()) == 6.0


@SETTINGS
@given(st.integers(0, 30), st.integers(1, 16), st.booleans())
def test_schedule_total_and_shape(r, depth, decreasing):
    s = schedule(r, depth, decreasing)
    assert len(s) == depth and sum(s) == r * depth
    if decreasing:
        assert all(a >= b for a, b in zip(s, s[1:]))


@SETTINGS
@given(st.integers(0, 30), st.integers(2, 16), st.data())
def test_schedule_only_at_given_layers(r, depth, data):
    layers = data.draw(st.lists(st.integers(0, depth - 1), min_size=1, max_size=depth, unique=True))
    s = schedule(r, depth, False, layers)
    assert [i for i, v in enumerate(s) if v] == (sorted(layers) if r else [])


def test_list_schedule_is_taken_as_given():
    assert schedule([3, 0, 2], 3) == [3, 0, 2]


@pytest.mark.parametrize("n,protected,expected", [(65, 1, 32), (197, 1, 98), (10, 2, 4), (3, 1, 1)])
def test_max_r(n, protected, expected):
    assert max_r(n, protected) == expected
