"""Mixed precision of a causal LM's linear layers (quantize.weight_only's `mixed`): the chooser
as a pure algorithm (property tests against brute force), the round-to-nearest the scan uses,
the scan's block-cached rerun against whole forwards, and the stage end to end on a tiny Llama
to both generation runtimes, with one-line refusals of budgets that cannot be met."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.quantize import lm_mixed as mx

CHOICES = [mx.Choice(4, 32), mx.Choice(4, 64), mx.Choice(8, 64), mx.Choice(16, 64)]


@st.composite
def problems(draw):
    """Units of 1-4 options each (loss and cost in two cost models), and a budget."""
    n = draw(st.integers(1, 5))
    options = []
    for _ in range(n):
        k = draw(st.integers(1, 4))
        opts = []
        for c in CHOICES[:k]:
            loss = draw(st.floats(0, 1, allow_nan=False))
            a = draw(st.integers(1, 100))
            b = draw(st.integers(1, 100))
            opts.append(mx.Option(c, loss, (float(a), float(b))))
        options.append(opts)
    scale = draw(st.floats(0.3, 2.0))
    budget = tuple(scale * sum(max(o.cost[d] for o in opts) for opts in options) for d in range(2))
    return options, budget


def _loss(options, pick):
    return sum(options[u][i].loss for u, i in enumerate(pick))


def _fits(options, pick, budget):
    return all(sum(options[u][i].cost[d] for u, i in enumerate(pick)) <= budget[d] * (1 + 1e-9) for d in range(2))


@settings(max_examples=1000, deadline=None)
@given(problems())
def test_the_choice_fits_the_budget_in_every_cost_model_or_is_none_only_when_nothing_fits(problem):
    options, budget = problem
    pick = mx.choose(options, budget)
    every = list(itertools.product(*[range(len(o)) for o in options]))
    feasible = [p for p in every if _fits(options, p, budget)]
    if pick is None:  # these problems are small enough for the chooser to be sure
        assert not feasible
        return
    assert _fits(options, pick, budget)
    assert feasible
    # never worse than a uniform assignment that fits
    for c in CHOICES:
        if all(len(o) == 1 or any(x.choice == c for x in o) for o in options):
            uniform = [0 if len(o) == 1 else next(i for i, x in enumerate(o) if x.choice == c) for o in options]
            if _fits(options, uniform, budget):
                assert _loss(options, pick) <= _loss(options, uniform) + 1e-12


@settings(max_examples=200, deadline=None)
@given(problems())
def test_with_room_for_everything_each_unit_gets_its_least_harmful_option(problem):
    options, _ = problem
    roomy = tuple(sum(max(o.cost[d] for o in opts) for opts in options) for d in range(2))
    pick = mx.choose(options, roomy)
    assert _loss(options, pick) == pytest.approx(sum(min(o.loss for o in opts) for opts in options))


def test_the_greedy_spends_the_budget_where_it_saves_most():
    # two layers: one that 8 bits saves much, one that it saves little; room for one upgrade
    a = [mx.Option(mx.Choice(4, 64), 1.0, (10.0,)), mx.Option(mx.Choice(8, 64), 0.0, (20.0,))]
    b = [mx.Option(mx.Choice(4, 64), 0.1, (10.0,)), mx.Option(mx.Choice(8, 64), 0.0, (20.0,))]
    assert mx.choose([a, b], (30.0,)) == [1, 0]
    assert mx.choose([b, a], (30.0,)) == [0, 1]
    assert mx.choose([a, b], (19.0,)) is None


def test_layer_bytes_count_integers_scales_and_zero_points():
    assert mx.layer_bytes(8, 64, mx.Choice(4, 32), True, 4) == 8 * 64 / 2 + 16 * 4
    assert mx.layer_bytes(8, 64, mx.Choice(4, 32), False, 2) == 8 * 64 / 2 + 16 * 2 + 16 * 0.5
    assert mx.layer_bytes(8, 64, mx.Choice(8, 64), True, 2) == 8 * 64 + 8 * 2
    assert mx.layer_bytes(8, 64, mx.Choice(16, 64), True, 2) == 8 * 64 * 4


def test_q_k_v_of_a_block_are_one_unit_the_rest_alone():
    names = [f"model.layers.{i}.{p}" for i in range(2) for p in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj")]
    got = mx.units(names)
    assert got[0] == names[:3] and got[1] == [names[3]] and got[3] == names[5:8] and len(got) == 6


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 8]), st.sampled_from([16, 32, 64]), st.booleans())
def test_round_to_nearest_keeps_at_most_2_to_the_bits_levels_per_group_and_half_a_step_of_error(seed, bits, group,
                                                                                                symmetric):
    import torch

    w = torch.from_numpy(np.random.default_rng(seed).normal(size=(4, 128)).astype(np.float32))
    q = mx.fake_quantize(w, mx.Choice(bits, group), symmetric)
    assert q.shape == w.shape
    for g in range(128 // group):
        cols = slice(g * group, (g + 1) * group)
        for r in range(4):
            levels = np.unique(q[r, cols].numpy())
            assert len(levels) <= 2**bits
            span = float(w[r, cols].abs().max()) * 2 if symmetric else float(w[r, cols].max() - w[r, cols].min())
            step = span / (2**bits - (2 if symmetric else 1))
            assert float((q[r, cols] - w[r, cols]).abs().max()) <= step / 2 + 1e-5


def test_the_block_cached_rerun_gives_the_whole_forward(tiny_llama_dir):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    windows = [np.arange(40) % 50 + 3, np.arange(40)[::-1] % 50 + 3]
    scanner = mx.Scanner(model, windows)
    assert scanner.fast
    layer = "model.layers.1.mlp.down_proj"
    assert scanner.kl([layer]) == pytest.approx(0.0, abs=1e-6)
    mod = dict(model.named_modules())[layer]
    saved = mod.weight.detach().clone()
    with torch.no_grad():
        mod.weight.copy_(mx.fake_quantize(saved, mx.Choice(4, 128), True))
    fast = scanner.kl([layer])
    scanner.fast = False
    slow = scanner.kl([layer])
    assert fast > 1e-6 and fast == pytest.approx(slow, rel=1e-3)


def _tiny_scan_inputs(tiny_llama_dir):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    groups = mx.units(names)
    candidates = {u: [mx.Choice(4, 64), mx.Choice(8, 64)] for u in range(len(groups))}
    return model, [np.arange(24) % 50 + 3], groups, candidates


def test_a_scan_is_kept_and_answered_again_only_for_the_same_model_and_windows(tmp_path, monkeypatch,
                                                                                 tiny_llama_dir):
    import torch

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    model, windows, groups, candidates = _tiny_scan_inputs(tiny_llama_dir)
    started = []

    def progress():
        started.append(1)
        return lambda n: None

    first, cached = mx.cached_scan(model, windows, groups, candidates, True, progress)
    assert not cached and started == [1]
    again, cached = mx.cached_scan(model, windows, groups, candidates, True, progress)
    assert cached and started == [1] and again == first
    # another window, or one weight changed, is another scan
    _, cached = mx.cached_scan(model, [windows[0] + 1], groups, candidates, True, progress)
    assert not cached
    with torch.no_grad():
        dict(model.named_modules())[groups[-1][0]].weight[0, 0] += 1.0
    _, cached = mx.cached_scan(model, windows, groups, candidates, True, progress)
    assert not cached and len(started) == 3


def test_a_budget_in_one_targets_storage_holds_that_target_only(tiny_llama_dir):
    from types import SimpleNamespace

    from edgekit.quantize.weight_only import WeightOnlyConfig, _linear_names, choose_mix, layer_choices

    model, windows, _, _ = _tiny_scan_inputs(tiny_llama_dir)
    state = SimpleNamespace(progress=lambda label, total: (lambda n: None))
    cfg = WeightOnlyConfig(**{**MIX, "mixed": {**MIX["mixed"], "linear_mb": {"openvino-genai": 0.2}}})
    names = _linear_names(model)
    choices, fixed = layer_choices(cfg, names, model)
    out, record = choose_mix(cfg, cfg.mixed, model, choices, fixed, windows, state)
    assert record["budget_mb"] == {"openvino-genai": 0.2}
    assert record["predicted_mb"]["openvino-genai"] <= 0.2
    # ONNX Runtime GenAI keeps 4-byte scales: the same mix is larger there, and not held to 0.2
    assert record["predicted_mb"]["onnxruntime-genai"] > record["predicted_mb"]["openvino-genai"]
    assert all(set(f["mb"]) == {"openvino-genai"} for f in record["frontier"])
    assert set(out) == set(names)


# -- the stage end to end ---------------------------------------------------------------------

pytest.importorskip("neural_compressor")

MIX = {"kind": "quantize.weight_only", "algorithm": "rtn", "bits": 4, "group_size": 64,
       "mixed": {"choices": [{"bits": 4, "group_size": 32}, {"bits": 4, "group_size": 64},
                             {"bits": 4, "group_size": 128}, {"bits": 8, "group_size": 64}], "windows": 2}}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_llama_dir):
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("openvino_genai")
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.test_quantize_weight_only import OV_INT4, ORT_INT4, _lm_recipe

    tmp = tmp_path_factory.mktemp("mixed")
    stage = {**MIX, "mixed": {**MIX["mixed"], "linear_mb": 0.2},
             "layers": [{"match": "model.layers.0.mlp.down_proj", "bits": 8, "group_size": 128}]}
    recipe = _lm_recipe(tmp, tiny_llama_dir, [stage, {**ORT_INT4, "block_size": 64}, OV_INT4])
    return run(load_recipe(recipe), tmp / "out")


def test_the_mix_is_scanned_chosen_within_budget_and_placed_in_both_runtimes(mixed_run):
    import onnx

    rec = {s["kind"]: s["measured"] for s in mixed_run.manifest["stages"]}
    mixed = rec["quantize.weight_only"]["mixed"]
    assert all(p <= 0.2 for p in mixed["predicted_mb"].values())
    assert mixed["budget_mb"] == {"onnxruntime-genai": 0.2, "openvino-genai": 0.2}
    held = [u for u in mixed["layers"] if u["names"] == ["model.layers.0.mlp.down_proj"]]
    assert held and held[0]["kl"] is None and held[0]["choice"] == "int8/g128"
    scanned = [u for u in mixed["layers"] if u["kl"] is not None]
    assert all(set(u["kl"]) == {"int4/g32", "int4/g64", "int4/g128", "int8/g64"} for u in scanned)
    # what the scan says 8 bits cost is far below what 4 bits cost, layer by layer
    assert all(u["kl"]["int8/g64"] < u["kl"]["int4/g128"] for u in scanned)
    assert len({u["choice"] for u in mixed["layers"]}) >= 2, mixed["chosen"]
    assert rec["target.onnxruntime-genai"]["integers_read_back_equal"] == 14
    assert rec["target.openvino-genai"]["integers_read_back_equal"] == 14
    # each MatMulNBits carries its layer's chosen group
    chosen = {u["names"][0]: u["choice"] for u in mixed["layers"]}
    graph = onnx.load(str(mixed_run.out_dir / "models" / "int4" / "model.onnx"), load_external_data=False)
    blocks = {n.name: next(a.i for a in n.attribute if a.name == "block_size") for n in graph.graph.node
              if n.op_type == "MatMulNBits" and "layers.0/mlp/down_proj" in n.name}
    assert list(blocks.values()) == [int(chosen["model.layers.0.mlp.down_proj"].split("/g")[1])]


def test_a_budget_below_the_smallest_mix_is_one_line_and_writes_nothing(tmp_path, tiny_llama_dir):
    from edgekit.errors import RecipeError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.test_quantize_weight_only import ORT_INT4, _lm_recipe

    stage = {**MIX, "mixed": {**MIX["mixed"], "linear_mb": 0.01}}
    recipe = _lm_recipe(tmp_path, tiny_llama_dir, [stage, {**ORT_INT4, "block_size": 64}])
    with pytest.raises(RecipeError, match=r"stages\[0\].mixed: the budget \(0.01 MB of linear layers in "
                       r"onnxruntime-genai's storage\) is below the smallest mix these choices make \(0.16 MB\)"):
        run(load_recipe(recipe), tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-lm").exists()


@pytest.mark.parametrize("mixed, message", [
    ({"linear_mb": 1.0, "same_size_as": {"bits": 4}}, "set one budget: same_size_as or linear_mb, not both"),
    ({"choices": [{"bits": 4, "group_size": 48}]}, "group_size must be one of 16, 32, 64, 128, 256"),
    ({"windows": 0}, "windows"),
    ({"budget": 3}, "budget"),
    ({"linear_mb": {}}, "linear_mb: name at least one target"),
    ({"linear_mb": {"tensorrt": 60}}, "linear_mb"),
])
def test_bad_mixed_settings_are_one_recipe_line(tmp_path, tiny_llama_dir, mixed, message):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe
    from tests.test_quantize_weight_only import ORT_INT4, _lm_recipe

    with pytest.raises(RecipeError) as exc:
        load_recipe(_lm_recipe(tmp_path, tiny_llama_dir, [{**MIX, "mixed": mixed}, ORT_INT4]))
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_mixed_without_calibration_text_is_one_data_error(tmp_path, tiny_llama_dir):
    from edgekit.errors import DataError
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from tests.test_quantize_weight_only import ORT_INT4, _lm_recipe

    recipe = _lm_recipe(tmp_path, tiny_llama_dir, [MIX, ORT_INT4], calibration=False)
    with pytest.raises(DataError, match="quantize.weight_only: mixed needs calibration text"):
        run(load_recipe(recipe), tmp_path / "out")


def test_a_fit_found_when_the_largest_fraction_start_overflows():
    """Found by the property test: each unit's cheapest option by its largest budget fraction
    (ties to the less harmful) overflows the first cost model, though a mix fits; the weighted
    starts find it without the exhaustive search."""
    o = mx.Option
    a, b = CHOICES[0], CHOICES[1]
    options = [[o(a, 1.0, (1.0, 6.0)), o(b, 0.0, (3.0, 1.0))], [o(a, 0.0, (1.0, 1.0))],
               [o(a, 0.0, (1.0, 4.0)), o(b, 0.0, (1.0, 1.0))], [o(a, 0.0, (1.0, 1.0))]]
    budget = (4.5, 9.0)
    assert not _fits(options, [1, 0, 1, 0], budget)
    assert any(_fits(options, p, budget) for p in mx._starts(options, budget))
    assert mx.choose(options, budget) == [0, 0, 1, 0]
