"""A real English sentence corpus that needs no download: the docstrings of stdlib modules,
split into sentences. Deterministic for a given Python version."""

from __future__ import annotations

import importlib
import re
from functools import lru_cache

MODULES = (
    "argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "functools",
    "heapq", "http.client", "json", "logging", "os", "pathlib", "random", "re", "shutil",
    "subprocess", "threading", "unittest", "zipfile", "textwrap", "statistics", "fractions",
)


def _docs(mod: object) -> list[str]:
    out = [mod.__doc__ or ""]
    for name in sorted(dir(mod)):
        obj = getattr(mod, name, None)
        if callable(obj) and getattr(obj, "__module__", None) == getattr(mod, "__name__", None):
            out.append(obj.__doc__ or "")
    return out


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in MODULES:
        for doc in _docs(importlib.import_module(name)):
            text = " ".join(doc.split())
            for sent in re.split(r"(?<=[.!?])\s+", text):
                if 30 <= len(sent) <= 400 and sent[0].isalpha() and ">>>" not in sent:
                    seen.setdefault(sent, None)
    return tuple(seen)


def split(name: str) -> list[str]:
    """Every fourth sentence is held out for evaluation; calibration draws from the rest."""
    all_ = corpus()
    if name == "all":
        return list(all_)
    if name == "test":
        return [s for i, s in enumerate(all_) if i % 4 == 3]
    return [s for i, s in enumerate(all_) if i % 4 != 3]
