"""Node name patterns: per-node settings in a recipe are keyed by exact name or `re:` regex."""

from __future__ import annotations

import re


def check_patterns(patterns: list[str]) -> list[str]:
    """Per-node settings are keyed by exact name or `re:` regex; a bad regex is a recipe error."""
    for p in patterns:
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as exc:
                raise ValueError(f"invalid regex {p!r}: {exc}") from exc
    return patterns


def matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name
