"""The progress callback every long step takes: `progress(label, total)` returns `tick(n)`. The
CLI passes rich bars; the Python API and tests pass `no_progress`."""

from __future__ import annotations

from typing import Any, Callable

Tick = Callable[[int], None]
Progress = Callable[[str, int], Tick]


def no_progress(label: str, total: int) -> Tick:
    return lambda n: None


def block_ticks(model: Any, progress: Progress, what: str) -> list[Any]:
    """Hooks that tick once the first time each decoder block (model.model.layers) runs: a
    quantizer that works block by block and shows no progress of its own (INC, auto-round) then
    shows it. Returns the hook handles to remove; none for a model without such blocks."""
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if blocks is None:
        return []
    tick = progress(what, len(blocks))
    seen: set[int] = set()

    def hook(i: int) -> Any:
        def pre(*_: Any) -> None:
            if i not in seen:
                seen.add(i)
                tick(1)
        return pre

    return [b.register_forward_pre_hook(hook(i)) for i, b in enumerate(blocks)]
