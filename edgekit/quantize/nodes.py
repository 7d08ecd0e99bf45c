"""Resolve per-node patterns (exact names or `re:` regexes) against an ONNX graph."""

from __future__ import annotations

from pathlib import Path

from edgekit.core.patterns import matches
from edgekit.errors import RecipeError


def node_names(path: Path) -> list[tuple[str, str]]:
    """(name, op_type) of every node in the graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node]


def nodes_matching(patterns: list[str], nodes: list[tuple[str, str]], field: str) -> list[str]:
    """Names matched by any pattern; a pattern that matches nothing is a recipe error, since it
    is almost always a typo that would otherwise silently quantize the node it meant to keep."""
    chosen: list[str] = []
    for p in patterns:
        hit = [name for name, _ in nodes if matches(p, name)]
        if not hit:
            sample = ", ".join(name for name, _ in nodes[:8])
            raise RecipeError(
                f"{field}: pattern {p!r} matches no node of the graph; node names look like: {sample}, ..."
            )
        chosen += hit
    return list(dict.fromkeys(chosen))
