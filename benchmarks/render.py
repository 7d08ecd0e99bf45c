"""Render the committed benchmark results into the docs.

    .venv/bin/python -m benchmarks.render            rewrite README.md and docs/*.md
    .venv/bin/python -m benchmarks.render --check    exit 1, listing the files that differ

In README.md and every docs/*.md, the text between a line `<!-- results: NAME -->` and the next
`<!-- end results -->` is replaced by what the results files
`benchmarks/results/<cpu-class>/NAME.json` (written by `benchmarks/_results.py`) hold: per CPU
class (sorted by name) a line with the class, CPU model, date, command and versions, then each
table with its title and notes. A benchmark without a results file gets one line saying so and
which command produces one. `<!-- results: index -->` becomes a matrix benchmark x CPU class with
the date of each result. Markers inside fenced code blocks are left alone."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(r"^<!-- results: ([A-Za-z0-9_.-]+) -->\s*$")
END = re.compile(r"^<!-- end results -->\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INDEX = "index"
NOT_SCRIPTS = {"render"}


class RenderError(ValueError):
    """A page whose result blocks cannot be parsed (a start marker without its end)."""


# ------------------------------------------------------------------------------------------
# where things are


def scripts(bench_dir: Path) -> list[str]:
    """The benchmark scripts: benchmarks/*.py but the helpers (`_*.py`, this renderer)."""
    return sorted(p.stem for p in Path(bench_dir).glob("*.py")
                  if not p.stem.startswith("_") and p.stem not in NOT_SCRIPTS)


def pages(root: Path) -> list[Path]:
    """README.md and every docs/*.md under `root`."""
    root = Path(root)
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").glob("*.md"))


def load(results_dir: Path) -> list[dict[str, Any]]:
    from benchmarks._results import load_all

    return load_all(results_dir)


# ------------------------------------------------------------------------------------------
# Markdown


def _outside_code(text: str, fix: Any) -> str:
    """Apply `fix` to the parts of `text` that are not inside `code spans`."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code span at all
        return fix(text.replace("`", "\\`"))
    return "`".join(p if i % 2 else fix(p) for i, p in enumerate(parts))


def inline(text: Any) -> str:
    """Text for a paragraph: one line; HTML and attribute-list braces escaped."""
    text = " ".join(str(text).split())
    return _outside_code(text, lambda s: s.replace("<", "&lt;").replace("{", "\\{").replace("}", "\\}"))


def cell(text: Any) -> str:
    """Text for a table cell: `inline`, and pipes escaped (pipes inside code spans are kept)."""
    return _outside_code(inline(text), lambda s: s.replace("|", "\\|"))


def markdown_table(t: dict[str, Any]) -> str:
    headers = [cell(h) for h in t.get("headers") or []] or [""]
    lines = [f"**{inline(t.get('title', ''))}**", "", "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    for row in t.get("rows") or []:
        cells = [cell(v) for v in row][: len(headers)]
        cells += [""] * (len(headers) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    if t.get("notes"):
        lines += ["", inline(t["notes"])]
    return "\n".join(lines)


def header_line(doc: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (doc.get("versions") or {}).items() if v)
    return (f"**{inline(doc.get('cpu_class', '?'))}** · {inline(doc.get('cpu_model', '?'))} · "
            f"{inline(doc.get('date', '?'))} · `{doc.get('command', '?')}` · "
            f"edgekit {inline(doc.get('edgekit_version', '?'))}" + (f"; {inline(versions)}" if versions else ""))


def no_result(name: str) -> str:
    return f"No result is committed yet for this benchmark: `python -m benchmarks.{name}` produces one."


def render_benchmark(name: str, docs: list[dict[str, Any]]) -> str:
    mine = sorted((d for d in docs if d.get("benchmark") == name), key=lambda d: str(d.get("cpu_class")))
    if not mine:
        return no_result(name)
    parts = []
    for doc in mine:
        parts.append(header_line(doc))
        parts += [markdown_table(t) for t in doc.get("tables") or []]
    return "\n\n".join(parts)


def render_index(docs: list[dict[str, Any]], names: Iterable[str], page: str) -> str:
    """benchmark x CPU class: the date of each result, '–' where none; a benchmark links to its
    section when the page has an anchor `{#name}` for it."""
    names = sorted(set(names) | {str(d.get("benchmark")) for d in docs})
    classes = sorted({str(d.get("cpu_class")) for d in docs})
    if not classes:
        return "No result is committed yet for any benchmark."
    dates = {(str(d.get("benchmark")), str(d.get("cpu_class"))): str(d.get("date", ""))[:10] for d in docs}
    lines = ["| benchmark | " + " | ".join(cell(c) for c in classes) + " |", "|" + "---|" * (len(classes) + 1)]
    for name in names:
        label = f"[`{name}`](#{name})" if "{#" + name + "}" in page else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join(dates.get((name, c)) or "–" for c in classes) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# pages


def render_text(text: str, docs: list[dict[str, Any]], names: Iterable[str], where: str = "<text>") -> str:
    """`text` with every result block re-rendered from `docs`."""
    names = list(names)
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i, fenced = 0, False
    while i < len(lines):
        line = lines[i]
        if FENCE.match(line):
            fenced = not fenced
        m = None if fenced else START.match(line)
        if m is None:
            if not fenced and END.match(line):
                raise RenderError(f"{where}:{i + 1}: '<!-- end results -->' without a '<!-- results: NAME -->' before it")
            out.append(line)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not END.match(lines[j]):
            if START.match(lines[j]):
                raise RenderError(f"{where}:{j + 1}: a results block starts inside the one opened at line {i + 1}")
            j += 1
        if j == len(lines):
            raise RenderError(f"{where}:{i + 1}: '<!-- results: {m.group(1)} -->' has no '<!-- end results -->'")
        name = m.group(1)
        body = render_index(docs, names, text) if name == INDEX else render_benchmark(name, docs)
        out += [line if line.endswith("\n") else line + "\n", "\n", body + "\n", "\n", lines[j]]
        i = j + 1
    return "".join(out)


def render(root: Path = ROOT, results_dir: Optional[Path] = None, check: bool = False) -> list[Path]:
    """Re-render every page under `root`; returns the pages whose text changed (with `check`,
    would change: nothing is written)."""
    root = Path(root)
    docs = load(results_dir or root / "benchmarks" / "results")
    names = scripts(root / "benchmarks")
    changed = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        new = render_text(text, docs, names, str(page))
        if new != text:
            changed.append(page)
            if not check:
                page.write_text(new, encoding="utf-8")
    return changed


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="render in memory; exit 1 listing the files that differ")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        changed = render(args.root, check=args.check)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rel = [str(p.relative_to(args.root)) if p.is_relative_to(args.root) else str(p) for p in changed]
    if args.check:
        if rel:
            print("results blocks differ from the committed results (run python -m benchmarks.render):\n  "
                  + "\n  ".join(rel), file=sys.stderr)
            return 1
        return 0
    print("rendered " + (", ".join(rel) if rel else "nothing: every page is up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
