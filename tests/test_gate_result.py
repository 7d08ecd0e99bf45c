"""How checks become an exit code, a JUnit file and a Markdown summary (pure, property-tested)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from edgekit.errors import BackendUnavailable, GateFailed, Inconclusive
from edgekit.gate import STATUSES, Check, GateResult
from edgekit.gate.ci import junit, markdown

statuses = st.lists(st.sampled_from(STATUSES), min_size=1, max_size=12)


def result_of(sts: list[str]) -> GateResult:
    return GateResult([Check("budget", f"b{i}", f"a/rt{i}", s, 1.0, 2.0, "ms", f"detail {i} | with a pipe")
                       for i, s in enumerate(sts)])


@given(sts=statuses, strict=st.booleans())
def test_exit_code_is_the_worst_status(sts: list[str], strict: bool) -> None:
    r = result_of(sts)
    code = r.exit_code(strict)
    if "fail" in sts:
        assert code == 1
    elif "unavailable" in sts:
        assert code == 4
    elif "inconclusive" in sts:
        assert code == (1 if strict else 3)
    else:
        assert code == 0
    err = r.error(strict)
    expected = {0: type(None), 1: GateFailed, 3: Inconclusive, 4: BackendUnavailable}[code]
    assert isinstance(err, expected)
    if err is not None:
        assert err.exit_code == code and str(err).startswith("gate ")


@given(sts=statuses, strict=st.booleans())
def test_junit_counts_match_the_checks(sts: list[str], strict: bool) -> None:
    suite = ET.fromstring(junit(result_of(sts), strict)).find("testsuite")
    assert suite is not None
    cases = list(suite.iter("testcase"))
    assert int(suite.get("tests")) == len(cases) == len(sts)
    failures = sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("failures")) == failures == sts.count("fail") + (sts.count("inconclusive") if strict else 0)
    assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases) == sts.count("unavailable")
    assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)


@given(sts=statuses)
def test_markdown_has_one_row_per_check_and_escapes_pipes(sts: list[str]) -> None:
    md = markdown(result_of(sts))
    rows = [line for line in md.splitlines() if line.startswith("| budget:")]
    assert len(rows) == len(sts)
    assert all(line.count(" | ") == 5 for line in rows)
