"""The speed verdict of benchmarks.genai_vs_builder / ov_vs_optimum: a tie must not pass as a
speed-up, whichever timing of the peer it happens to beat."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from benchmarks._int4_vs_peer import sign_test, verdict_tables

LABELS = ("speed", "wins", "verdicts")


@given(st.integers(1, 30), st.data())
def test_the_sign_test_falls_with_every_round_won(rounds, data):
    wins = data.draw(st.integers(0, rounds - 1))
    assert sign_test(0, rounds) == 1.0 and sign_test(rounds, rounds) == 0.5 ** rounds
    assert sign_test(wins + 1, rounds) < sign_test(wins, rounds)


def _verdicts(candidate_ms: list[float], again_ms: list[float], ppl: float = 20.0) -> dict[str, str]:
    peer = [10.0] * len(candidate_ms)
    quality = {k: {"perplexity": v, "kl_mean": 0.1} for k, v in (("peer", 21.0), ("ours", ppl), ("again", 21.0))}
    decode = {"peer": peer, "ours": candidate_ms, "again": again_ms}
    tables = verdict_tables("t", "peer", "again", ["ours"], quality, decode, {k: 1.0 for k in decode}, 15.0, LABELS)
    return {row[0]: row[3] for row in tables[1]["rows"]}


def test_faster_than_both_timings_of_the_peer_is_met():
    assert _verdicts([9.0] * 12, [10.0] * 12)["ours"] == "met"


def test_faster_than_one_timing_only_is_a_tie():
    """The peer's second timing ran as fast as the candidate in half the rounds: the win over
    the first timing is the first timing's bad luck, not a speed-up."""
    again = [8.0, 10.0] * 6
    verdict = _verdicts([9.0] * 12, again)
    assert verdict["ours"].startswith("a tie within the noise") and verdict["again"] == "–"


def test_a_faster_folder_with_worse_perplexity_is_not_met():
    assert _verdicts([9.0] * 12, [10.0] * 12, ppl=22.0)["ours"] == "not met"


def test_the_fast_recipe_is_what_the_benchmarks_build_as_the_int4_lm_head_variants():
    """genai_vs_builder and ov_vs_optimum label a variant "lm_head INT4" and read its stages from
    recipes/smollm2_int4_fast.yaml: the recipe must keep both targets' lm_head at INT4."""
    from benchmarks._int4_vs_peer import recipe_stages

    wo, ort, ov = recipe_stages("smollm2_int4_fast")
    assert wo["kind"] == "quantize.weight_only" and wo["algorithm"] == "autoround" and wo["bits"] == 4
    assert ort["kind"] == "target.onnxruntime-genai" and ort["precision"] == "int4" and not ort.get("int8_layers")
    assert ov["kind"] == "target.openvino-genai" and ov["weights"] == "int4_sym" and ov["all_layers"] is True
