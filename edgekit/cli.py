"""The edgekit command line. Every EdgekitError becomes one line on stderr and its exit code
(2 bad input, 1 a broken budget or parity, 3 inconclusive, 4 backend unavailable)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import click
import typer
import typer.core
from rich.console import Console
from rich.table import Table

from edgekit.errors import EdgekitError



class _Group(typer.core.TyperGroup):
    """Turns an EdgekitError from any command into one stderr line and its exit code, here
    rather than in `main`, so that typer's CliRunner sees exactly what a shell user sees."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EdgekitError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="From a trained model to a verified, profiled, gated edge artifact.")
out = Console()
if not out.is_terminal:  # CI logs: wide enough for the summary table
    out = Console(width=160)
err = Console(stderr=True)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    if not enabled:
        yield lambda label, total: (lambda n: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        def factory(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield factory


def _fmt(v: object, digits: int = 4) -> str:
    from edgekit.report import fmt

    return fmt(v, digits)


@app.command()
def compress(
    recipe: Path = typer.Option(..., "--recipe", "-r", help="recipe YAML"),
    out_dir: Path = typer.Option(Path("out"), "--out", "-o", help="where <name>/ is written"),
    force: bool = typer.Option(False, "--force", help="replace an existing out/<name>"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Run a recipe: export, compress, verify, evaluate and profile; write OUT/<name>/."""
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe
    from edgekit.report import summary_rows

    loaded = load_recipe(recipe)
    with _progress(not quiet and sys.stderr.isatty()) as progress:
        result = run(loaded, out_dir, force=force, progress=progress)
    table = Table(title=f"{loaded.recipe.name} → {result.out_dir}")
    for col in ("artifact", "runtime", "precision", "size MB", "metric", "value", "drop", "cosine", "p50 ms", "p90 ms"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision", "metric") else "right")
    for r in summary_rows(result.manifest):
        table.add_row(r["artifact"], r["runtime"], _fmt(r["precision"]), _fmt(r["size_mb"], 3), _fmt(r["metric"]),
                      _fmt(r["value"]), _fmt(r["drop"]), _fmt(r["cosine"]), _fmt(r["p50_ms"], 3), _fmt(r["p90_ms"], 3))
    out.print(table)


@app.command()
def validate(recipe: Path = typer.Argument(..., help="recipe YAML")) -> None:
    """Check a recipe without running it; list the extras it needs and whether they are installed."""
    from edgekit.backends import extra_installed
    from edgekit.recipe import load_recipe, required_extras

    loaded = load_recipe(recipe)
    r = loaded.recipe
    out.print(f"{recipe}: valid (edgekit: 1, name {r.name}, {len(r.stages)} stages: "
              f"{', '.join(s.kind for s in r.stages)})")
    for extra in required_extras(r):
        state = "installed" if extra_installed(extra) else f"missing: pip install 'edgekit[{extra}]'"
        out.print(f"  needs {extra}: {state}")


@app.command()
def stages() -> None:
    """List every stage kind, what it does, the extra it needs and which runtimes run its output."""
    from edgekit.stage import REGISTRY

    table = Table(title="edgekit stages")
    for col in ("kind", "extra", "side", "runs on", "description"):
        table.add_column(col)
    for info in REGISTRY.values():
        table.add_row(info.kind, ",".join(info.extras) or "-", info.side, ",".join(info.runs_on) or "-", info.summary)
    out.print(table)


@app.command()
def doctor() -> None:
    """Installed backends and versions, CPU model and the flags that matter, GPUs."""
    from edgekit.backends import KNOWN, version_of
    from edgekit.environment import cpu_info, gpu_info

    table = Table(title="backends")
    table.add_column("module")
    table.add_column("version")
    table.add_column("extra")
    for module, (_, extra) in KNOWN.items():
        v = version_of(module)
        table.add_row(module, v or "[red]not installed[/red]", extra)
    out.print(table)
    cpu = cpu_info()
    out.print(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores)")
    flags = cpu["flags"]
    out.print("flags: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in flags.items()))
    gpus = gpu_info()
    out.print("GPU: " + (", ".join(f"{g['name']} (driver {g['driver']})" for g in gpus) if gpus else "none"))


@app.command()
def inspect(artifact_dir: Path = typer.Argument(..., help="an out/<name> directory")) -> None:
    """Show what an artifact holds: files, stages, metrics and latency."""
    from edgekit.artifact import read_manifest
    from edgekit.report import markdown

    out.print(markdown(read_manifest(artifact_dir)), markup=False, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
