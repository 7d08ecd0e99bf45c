"""ValidationError -> one line naming the file, the field path as the YAML spells it
(`stages[1].activations.percentile`), the bad value and what is allowed; a typo gets the closest
valid key."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from edgekit.recipe.schema import recipe_model
from edgekit.stages import registry as stage_registry


def _fields_at(loc: tuple, data: Any) -> tuple[list[str], Any]:
    """The valid keys of the model at `loc` (walking annotations, picking stages by kind)."""
    current: Any = recipe_model()
    node = data
    for part in loc:
        current = _unwrap(current, node)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                break
            current = field.annotation
            node = node.get(part) if isinstance(node, dict) else None
        else:
            break
    current = _unwrap(current, node)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields), current
    return [], current


def _unwrap(tp: Any, node: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0], node)
    if origin is Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if isinstance(node, dict) and "kind" in node:
            for opt in options:
                kf = getattr(opt, "model_fields", {}).get("kind")
                if kf is not None and typing.get_args(kf.annotation) == (node["kind"],):
                    return opt
        return options[0] if len(options) == 1 else tp
    return tp


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


# how pydantic names a plain union's member in an error's loc ("int", "list[int]", ...); no
# recipe field is named like this
_UNION_TAG = re.compile(r"^(int|float|str|bool|none)$|\[")


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in stage_registry.REGISTRY or bool(_UNION_TAG.search(part)))


def _strip_tags(loc: tuple, data: Any = None) -> tuple:
    """pydantic inserts the union member's tag into loc: drop it so paths read as the YAML does.
    A part that is a key (or index) of the user's data at that point is the user's, whatever it
    is called ('int', 'a[b]'), so the walk follows the data and drops only what is not in it."""
    out, node = [], data
    for p in loc:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        elif _is_tag(p):
            continue
        else:
            node = None
        out.append(p)
    return tuple(out)


def _primary(errors: list[dict], data: Any = None) -> dict:
    """The error worth the one line: an unknown key inside a section (a typo there also shows as
    a missing field, which hides it); within a plain union (`r: int | list[int]`), the branch that
    got furthest (`r[1]` rather than "r is not an int")."""
    typos = sorted((e for e in errors if e["type"] == "extra_forbidden"), key=lambda e: len(e["loc"]) == 1)
    first = typos[0] if typos else errors[0]  # nested typos first, then top-level ones ('stagez')
    if any(_is_tag(p) and p not in stage_registry.REGISTRY for p in first["loc"]):
        stem = _strip_tags(first["loc"], data)
        same = [e for e in errors if _strip_tags(e["loc"], data)[: len(stem)] == stem]
        first = max(same, key=lambda e: len(_strip_tags(e["loc"], data)))
    return first


def _one_error(err: dict, data: Any) -> str:
    loc = _strip_tags(err["loc"], data)
    etype = err["type"]
    value = err.get("input")
    ctx = err.get("ctx", {}) or {}
    if etype == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        valid, _ = _fields_at(parent, data)
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = f"{_path(parent)}: " if parent else ""
        return f"{where}unknown key {str(key)!r}{hint}; allowed keys: {', '.join(valid)}"
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        kinds = list(stage_registry.REGISTRY)
        tag = ctx.get("tag", value.get("kind") if isinstance(value, dict) else None)
        if tag is None:
            return f"{_path(loc)}: missing 'kind'; allowed kinds: {', '.join(kinds)}"
        close = difflib.get_close_matches(str(tag), kinds, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{_path(loc)}.kind: unknown stage kind {tag!r}{hint}; allowed kinds: {', '.join(kinds)}"
    if etype == "missing":
        return f"{_path(loc)}: required field is missing"
    if etype == "literal_error":
        return f"{_path(loc)}: got {value!r}; allowed: {ctx.get('expected')}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if not loc:  # a whole-recipe check: its message names the fields and values itself
        return msg
    if "got " in msg or (isinstance(value, (dict, list)) and len(repr(value)) >= 60):
        return f"{_path(loc)}: {msg}"  # the message shows the value already, or it is too long to help
    return f"{_path(loc)}: {msg}; got {value!r}"


def format_validation_error(source: str, exc: ValidationError, data: Any) -> str:
    errors = exc.errors()
    first = _one_error(_primary(errors, data), data)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {first}{more}".replace("\n", "\\n")  # one line, whatever the YAML held
