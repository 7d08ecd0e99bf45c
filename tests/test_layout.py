"""The package's shape: no import circles between modules or between the phase packages, and
nothing loose at the top but the CLI, the pipeline and the errors.

Read from the source with `ast` rather than by importing, so that every import counts, the
ones inside functions and under TYPE_CHECKING too: a circle that only closes at call time is
still a circle for a reader following the code."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgekit"
TOP_LEVEL_MODULES = {"__init__.py", "cli.py", "pipeline.py", "errors.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _targets(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The edgekit modules an import statement reaches (a `from pkg import name` that names a
    submodule reaches the submodule, otherwise the package)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            parent = ".".join(base + ([node.module] if node.module else []))
        else:
            parent = node.module or ""
        names = [f"{parent}.{a.name}" if f"{parent}.{a.name}" in known else parent for a in node.names]
    found = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith("edgekit") and name != module:
            found.append(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, path, node, known))
    return graph


def package_of(module: str) -> str:
    """`edgekit.quantize.int4` -> `edgekit.quantize`; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(package_of(a), set())
        for b in targets:
            if package_of(a) != package_of(b) and b != "edgekit":
                out[package_of(a)].add(package_of(b))
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as a path [a, b, ..., a], or [] when the graph has none (depth-first search with
    the path kept, so the failure message shows the whole circle)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(v: str) -> list[str]:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        path.pop()
        state[v] = 2
        return []

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return []


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=20))
def test_find_cycle_finds_a_real_cycle_exactly_when_there_is_one(edges):
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(str(a), set()).add(str(b))
    cycle = find_cycle(graph)
    # reference answer: a graph is acyclic iff repeatedly removing nodes without in-graph
    # successors empties it
    nodes = set(graph) | {b for bs in graph.values() for b in bs}
    remaining = set(nodes)
    while True:
        sinks = {v for v in remaining if not (graph.get(v, set()) & remaining)}
        if not sinks:
            break
        remaining -= sinks
    assert bool(cycle) == bool(remaining)
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in graph[a] for a, b in zip(cycle, cycle[1:]))


def test_no_import_circle_between_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_no_import_circle_between_phase_packages():
    """`sources` may use `artifact`, `report` may use `profile`, never both ways: the packages
    read in one direction, from the runtimes up to the CLI."""
    cycle = find_cycle(package_graph(import_graph()))
    assert not cycle, "package circle: " + " -> ".join(cycle)


def test_runtimes_import_no_stage_and_no_later_phase():
    """A target stage (export.tensorrt, export.npu) imports its runtime, never the other way."""
    later = {"edgekit.export", "edgekit.prune", "edgekit.quantize", "edgekit.tokens", "edgekit.finetune",
             "edgekit.stages", "edgekit.checks", "edgekit.profile", "edgekit.gate", "edgekit.report",
             "edgekit.sweep", "edgekit.pipeline", "edgekit.cli", "edgekit.recipe", "edgekit.sources"}
    graph = import_graph()
    bad = [f"{m} -> {t}" for m, ts in graph.items() if package_of(m) == "edgekit.runtimes"
           for t in ts if package_of(t) in later]
    assert not bad, bad


def test_the_top_level_holds_only_the_entry_points():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert not loose, f"modules loose at the top of edgekit/ (put them in the package of their phase): {loose}"
