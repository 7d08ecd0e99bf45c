"""`pkg.module:function` references in a recipe (models, data, evaluators, losses): one importer,
so every field that names user code fails the same way, naming the field."""

from __future__ import annotations

import importlib
import os
from typing import Any

from edgekit.errors import ModelLoadError


def import_entrypoint(ref: str, field_name: str) -> Any:
    """Import `pkg.module:attr`. The working directory is importable while the entrypoint is
    imported, as for `python -m`, so that a user's own package next to the recipe works from the
    console script too; it is taken off `sys.path` again afterwards, so the rest of the process
    (the runtimes' own imports) never picks up a stray module from wherever edgekit was started."""
    import sys

    module_name, _, attr = ref.partition(":")
    cwd = os.getcwd()
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelLoadError(
            f"{field_name}: cannot import {module_name!r} from {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{field_name}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
