"""The one-line quoting of library exceptions that every typed error relies on."""

from __future__ import annotations

from edgekit.errors import first_line


def test_first_line_of_any_exception():
    assert first_line(RuntimeError("\n  boom\nsecond line")) == "boom"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(ValueError("   \n ")) == "ValueError"
