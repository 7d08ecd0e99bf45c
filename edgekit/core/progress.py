"""The progress callback every long step takes: `progress(label, total)` returns `tick(n)`. The
CLI passes rich bars; the Python API and tests pass `no_progress`."""

from __future__ import annotations

from typing import Callable

Tick = Callable[[int], None]
Progress = Callable[[str, int], Tick]


def no_progress(label: str, total: int) -> Tick:
    return lambda n: None
