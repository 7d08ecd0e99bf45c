"""The one registry of runtimes: what each runs, what it needs, how to open it and how to check a
model offline for it. Recipe validation, `edgekit stages`, `inspect --target`, `profile`,
verification and the manifest all read these rows, so a runtime is added by one module and one
row (`register`), never by editing a list elsewhere."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Problem:
    """One reason a target cannot run a model as it is: the node (or the whole graph when
    `node` is empty), why, and the rewrite that would fix it."""

    target: str
    why: str
    op_type: str = ""
    node: str = ""
    position: Optional[int] = None  # index of the node in the graph's topological order
    fix: str = ""
    severity: str = "error"  # "error": the target refuses it; "warning": it runs, slower than it could

    def line(self) -> str:
        where = f"node {self.position} {self.node!r} ({self.op_type})" if self.node or self.op_type else "graph"
        fix = f"; fix: {self.fix}" if self.fix else ""
        tag = "" if self.severity == "error" else f" [{self.severity}]"
        return f"{self.target}{tag}: {where}: {self.why}{fix}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "op_type": self.op_type, "node": self.node, "position": self.position,
                "why": self.why, "fix": self.fix, "severity": self.severity}


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    where: str  # "package.module:RunnerClass"
    formats: tuple[str, ...]  # artifact formats it runs
    extra: str  # the edgekit extra that installs it
    summary: str
    suffixes: tuple[str, ...] = ()  # model files `edgekit profile FILE` opens with it by default
    hardware: str = "cpu"  # "cpu", "nvidia-gpu", "npu": a missing accelerator skips, a missing CPU runtime refuses
    engine: Optional[str] = None  # the session type device_side.py opens for it; None: this process only
    cpu_bound: bool = False  # its numerics follow the CPU class (INT8 kernels): verified under emulation too
    options: dict[str, Any] = field(default_factory=dict)  # runner options every artifact gets (providers)
    # runner options when several of its sessions are open in one process and timed in turn
    # (`gate --ab`, interleaved benchmarks): an idle session must not take CPU from the timed one
    side_by_side: dict[str, Any] = field(default_factory=dict)
    records: tuple[str, ...] = ()  # what its runner details hold, besides threads and version
    compatibility: Optional[str] = None  # "module:function" (path) -> list[Problem], offline
    unavailable: Optional[str] = None  # "module:function" (row) -> reason it cannot run here, or None
    example_feeds: Optional[str] = None  # "module:function" (path) -> feeds of a bare model file's own shapes
    deployable: bool = True  # a recipe may name it in `targets` (pytorch runs only the source)

    def runner_class(self) -> Any:
        return _attr(self.where)

    def check(self, path: Path) -> list[Problem]:
        return list(_attr(self.compatibility)(Path(path))) if self.compatibility else []

    def feeds_for(self, path: Path) -> Optional[dict[str, Any]]:
        """Feeds from a model file's own input shapes, where the runtime can read them unopened."""
        return _attr(self.example_feeds)(Path(path)) if self.example_feeds else None

    def missing_here(self) -> Optional[str]:
        return _attr(self.unavailable)(self) if self.unavailable else None


def _attr(where: str) -> Callable[..., Any]:
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


# the modules that define the built-in rows (each exports INFO, or INFOS for several)
BUILTIN = (
    "edgekit.runtimes.pytorch", "edgekit.runtimes.ort", "edgekit.runtimes.ov", "edgekit.runtimes.tensorrt.runner",
    "edgekit.runtimes.npu.qnn", "edgekit.runtimes.genai", "edgekit.runtimes.ov_genai",
)

REGISTRY: dict[str, RuntimeInfo] = {}


def register(info: RuntimeInfo) -> RuntimeInfo:
    """Add (or replace) a runtime row; the recipe schema's `targets` check reads the registry at
    validation time, so a runtime registered before loading a recipe is accepted there."""
    REGISTRY[info.name] = info
    return info


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def _load_builtin() -> None:
    for module in BUILTIN:
        mod = importlib.import_module(module)
        for info in getattr(mod, "INFOS", None) or (mod.INFO,):
            REGISTRY.setdefault(info.name, info)


def get(name: str, what: str = "runtime") -> RuntimeInfo:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{what} {name!r}: unknown runtime{hint}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names(deployable: bool = False) -> list[str]:
    """All runtime names, or only those a recipe may deploy to."""
    return [n for n, i in REGISTRY.items() if i.deployable or not deployable]


def runs(fmt: str) -> list[str]:
    """Runtimes that read an artifact format."""
    return [n for n, i in REGISTRY.items() if fmt in i.formats]


def for_suffix(suffix: str) -> Optional[RuntimeInfo]:
    return next((i for i in REGISTRY.values() if suffix in i.suffixes), None)


def suffixes() -> list[str]:
    return [s for i in REGISTRY.values() for s in i.suffixes]


def open_runner(runtime: str, path: Path, threads: int, side_by_side: bool = False, **options: Any) -> Any:
    """A runner for a model file on a runtime, with the row's options under the caller's, and
    with the row's `side_by_side` settings over both when `side_by_side` (a dict option, such as
    a session config, is merged key by key, so the artifact's own entries stay)."""
    info = get(runtime)
    merged = {**info.options, **options}
    for key, value in (info.side_by_side if side_by_side else {}).items():
        merged[key] = {**(merged.get(key) or {}), **value} if isinstance(value, dict) else value
    return info.runner_class()(Path(path), threads, **merged)


def device_job(runtime: str, options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What device_side.py needs to open a runtime's session: its engine, and the row's options
    under the artifact's."""
    info = get(runtime)
    if info.engine is None:
        raise UsageError(f"runtime {runtime!r} cannot run in a separate runner process; allowed there: "
                         f"{', '.join(n for n, i in REGISTRY.items() if i.engine)}")
    return {"runtime": runtime, "engine": info.engine, "options": {**info.options, **(options or {})}}


def runs_device_side(runtime: str) -> bool:
    """Whether device_side.py can run it: a fresh process, an ssh device, an emulated CPU."""
    return get(runtime).engine is not None


_load_builtin()
