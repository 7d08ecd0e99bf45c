"""Field paths into a recipe (`stages[1].activations.calibration`): the one way a sweep file
names what it varies, spelled exactly as the recipe's own error messages spell fields, so that
a path copied from an error or from the YAML works as is."""

from __future__ import annotations

import copy
import re
from typing import Any, Union

Part = Union[str, int]

_FIRST = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEXT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


class PathError(ValueError):
    """A path that is malformed or names nothing in the recipe; the message says what exists."""


def parse(path: str) -> tuple[Part, ...]:
    m = _FIRST.match(path)
    if m is None:
        raise PathError(f"field path {path!r} must start with a recipe field, like stages[0].r")
    parts: list[Part] = [m.group(0)]
    pos = m.end()
    while pos < len(path):
        m = _NEXT.match(path, pos)
        if m is None:
            raise PathError(f"field path {path!r} is malformed at character {pos + 1}; "
                            "write it like stages[1].activations.calibration")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(parts)


def show(parts: tuple[Part, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "<root>"


def get(data: Any, parts: tuple[Part, ...]) -> Any:
    """The value at `parts`, or a PathError naming the deepest existing field and its keys."""
    node = data
    for i, p in enumerate(parts):
        here = show(parts[:i])
        if isinstance(p, int):
            if not isinstance(node, list):
                raise PathError(f"{here} is not a list, so [{p}] does not exist")
            if p >= len(node):
                raise PathError(f"{here} has {len(node)} entries, so [{p}] does not exist")
        else:
            if not isinstance(node, dict):
                kind = "a list" if isinstance(node, list) else f"the value {node!r}"
                raise PathError(f"{here} is {kind}, so .{p} does not exist")
            if p not in node:
                where = f"{here} has" if parts[:i] else "the recipe has"
                raise PathError(f"{where} no field {p!r}; it has: {', '.join(map(str, node))}")
        node = node[p]
    return node


def assign(data: Any, parts: tuple[Part, ...], value: Any) -> Any:
    """A deep copy of `data` with `value` at `parts`. Missing mappings on the way are created:
    the raw YAML leaves defaults out, and the schema decides afterwards whether the key is real."""
    out = copy.deepcopy(data)
    node = out
    for i, p in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(p, int):
            if not isinstance(node, list) or p >= len(node):
                raise PathError(f"{show(parts[:i + 1])} does not exist")
        elif not isinstance(node, dict):
            raise PathError(f"{show(parts[:i])} is not a mapping")
        elif not isinstance(node.get(p), (dict, list)):
            node[p] = [] if isinstance(nxt, int) else {}
        node = node[p]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise PathError(f"{show(parts)} does not exist")
    elif not isinstance(node, dict):
        raise PathError(f"{show(parts[:-1])} is not a mapping")
    node[last] = copy.deepcopy(value)
    return out
