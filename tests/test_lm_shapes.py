"""check_block: a group that does not divide a layer it applies to is one RecipeError line before
anything runs; with hidden_only (the embeddings and lm_head after quantize.weight_only) only the
hidden size counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekit.errors import RecipeError
from edgekit.sources.lm_shapes import BLOCK_SIZES, check_block


@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from([1, 2, 3, 4, 8]), st.sampled_from(BLOCK_SIZES),
       st.booleans())
def test_a_block_passes_exactly_when_it_divides_every_width_it_applies_to(h, i, heads, block, hidden_only):
    config = {"hidden_size": 16 * h * heads, "intermediate_size": 16 * i, "num_attention_heads": heads}
    applies = [config["hidden_size"]] if hidden_only else [config["hidden_size"], config["intermediate_size"]]
    try:
        check_block(block, config, hidden_only=hidden_only)
        passed = True
    except RecipeError as exc:
        passed = False
        assert "\n" not in str(exc) and str(exc).startswith(f"block_size: {block} does not divide")
    assert passed == all(w % block == 0 for w in applies)


def test_hidden_only_ignores_an_intermediate_size_the_group_does_not_divide():
    config = {"hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8}
    check_block(64, config, "group_size", hidden_only=True)
    with pytest.raises(RecipeError, match=r"group_size: 64 does not divide intermediate_size \(down_proj input\) = 1376"):
        check_block(64, config, "group_size")
