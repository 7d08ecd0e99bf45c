"""Field paths: the spelling the recipe's own errors use, read and written on plain data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekit.sweep.paths import PathError, assign, get, parse, show


def test_parse_and_show_round_trip():
    parts = parse("stages[1].activations.calibration")
    assert parts == ("stages", 1, "activations", "calibration")
    assert show(parts) == "stages[1].activations.calibration"


@pytest.mark.parametrize("bad", ["", "[0]", ".a", "a..b", "a[x]", "a[1]b", "a.1", "a[-1]"])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(PathError, match="field path"):
        parse(bad)


def test_get_names_what_exists_when_missing():
    data = {"stages": [{"kind": "export.onnx"}, {"activations": {"calibration": "minmax"}}], "name": "x"}
    assert get(data, parse("stages[1].activations.calibration")) == "minmax"
    with pytest.raises(PathError, match=r"stages has 2 entries, so \[2\] does not exist"):
        get(data, parse("stages[2].r"))
    with pytest.raises(PathError, match=r"stages\[1\].activations has no field 'calibrate'; it has: calibration"):
        get(data, parse("stages[1].activations.calibrate"))
    with pytest.raises(PathError, match=r"the recipe has no field 'stagez'"):
        get(data, parse("stagez[0]"))
    with pytest.raises(PathError, match="is the value 'x'"):
        get(data, parse("name.first"))


def test_assign_copies_and_creates_missing_mappings():
    data = {"stages": [{"kind": "quantize.int8"}]}
    out = assign(data, parse("stages[0].activations.calibration"), "mse")
    assert out["stages"][0]["activations"] == {"calibration": "mse"}
    assert data == {"stages": [{"kind": "quantize.int8"}]}  # the input is untouched
    out = assign(data, parse("verify.emulate"), False)
    assert out["verify"] == {"emulate": False}
    with pytest.raises(PathError):
        assign(data, parse("stages[3].r"), 8)


keys = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
values = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))


@st.composite
def data_and_path(draw):
    """A nested mapping/list document and a path to one of its leaves."""
    depth = draw(st.integers(1, 4))
    parts = [draw(keys)]
    for _ in range(depth - 1):
        parts.append(draw(st.one_of(keys, st.integers(0, 3))))
    leaf = draw(values)
    node = leaf
    for p in reversed(parts):
        if isinstance(p, int):
            node = [draw(values) for _ in range(p)] + [node] + [draw(values) for _ in range(draw(st.integers(0, 2)))]
        else:
            node = {p: node, **({"other": draw(values)} if p != "other" else {})}
    return node, tuple(parts), leaf


@given(data_and_path(), values)
def test_assign_then_get_reads_the_value_and_changes_nothing_else(dp, new):
    data, parts, old = dp
    assert get(data, parts) == old
    assert parse(show(parts)) == parts
    out = assign(data, parts, new)
    assert get(out, parts) == new
    assert assign(out, parts, old) == data
