"""The edgekit command line. Every EdgekitError becomes one line on stderr and its exit code
(2 bad input, 1 a broken budget or parity, 3 inconclusive, 4 backend unavailable)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click
import typer
import typer.core
from rich.console import Console
from rich.table import Table

from edgekit.core.progress import Progress, no_progress
from edgekit.errors import EdgekitError

# typer >= 0.29 vendors its own click (typer._click), whose exceptions are not the `click`
# package's; take the class typer itself raises, whichever click that is
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Group(typer.core.TyperGroup):
    """Turns an EdgekitError from any command into one stderr line and its exit code, here
    rather than in `main`, so that typer's CliRunner sees exactly what a shell user sees.
    click's own usage errors (bad option value, missing argument, unknown command) get the same
    one line instead of typer's multi-line box, keeping click's exit code (2)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EdgekitError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)
        except _ClickException as exc:
            where = getattr(exc, "ctx", None) or ctx
            err.print(f"error: {exc.format_message()} (see '{where.command_path} --help')",
                      markup=False, highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="From a trained model to a verified, profiled, gated edge artifact.")
out = Console()
if not out.is_terminal:  # CI logs: wide enough for the summary table
    out = Console(width=160)
err = Console(stderr=True)


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    if not enabled:
        yield no_progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        def factory(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield factory


def _output_file(path: Path, option: str) -> Path:
    """Check where a command will write before it spends minutes measuring, so that a directory
    or a file in the way fails as one line up front; missing parent directories are created."""
    from edgekit.errors import UsageError

    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file path")
    parent = next(p for p in path.resolve().parents if p.exists())
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a directory")
    return path


def _fmt(v: object, digits: int = 4) -> str:
    from edgekit.report.rows import fmt

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
    from edgekit.report.rows import stage_warnings, summary_cells, summary_headers, summary_rows

    loaded = load_recipe(recipe)
    with _progress(not quiet and sys.stderr.isatty()) as progress:
        result = run(loaded, out_dir, force=force, progress=progress)
    m = result.manifest
    cls = m["environment"]["cpu"]["class"]
    table = Table(title=f"{loaded.recipe.name} → {result.out_dir}  (measured here: {cls}, {m['environment']['cpu']['model']})")
    for col in summary_headers(cls):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision", "metric") else "right")
    for r in summary_rows(result.manifest):
        table.add_row(*summary_cells(r))
    out.print(table)
    for note in m["source_model"].get("normalization", {}).get("notes", []):
        out.print(f"note: model.onnx normalisation: {note}", markup=False, highlight=False, soft_wrap=True)
    for w in stage_warnings(m):
        out.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    _print_where_verified(m)


def _print_where_verified(manifest: dict) -> None:
    from edgekit.report.rows import verified_lines

    for line in verified_lines(manifest):
        out.print(line, markup=False, highlight=False)
    for w in manifest.get("warnings") or []:
        err.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def validate(recipe: Path = typer.Argument(..., help="recipe YAML")) -> None:
    """Check a recipe without running it; list the extras it needs and whether they are installed."""
    from edgekit.core.backends import extra_installed
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
    """List every stage kind (what it does, the extra it needs, which runtimes run its output) and every runtime."""
    from edgekit.stages.registry import REGISTRY

    table = Table(title="edgekit stages")
    for col in ("kind", "extra", "side", "runs on", "description"):
        table.add_column(col)
    for info in REGISTRY.values():
        table.add_row(info.kind, ",".join(info.extras) or "-", info.side, ",".join(info.runs_on()) or "-", info.summary)
    out.print(table)
    from edgekit.runtimes.registry import REGISTRY as RUNTIMES

    table = Table(title="edgekit runtimes (recipe targets)")
    for col in ("name", "extra", "hardware", "formats", "where it runs", "description"):
        table.add_column(col)
    for rt in RUNTIMES.values():
        where = "device process, ssh, emulated CPUs" if rt.engine else "this process"
        table.add_row(rt.name, rt.extra, rt.hardware, ",".join(rt.formats), where, rt.summary)
    out.print(table)


@app.command()
def doctor() -> None:
    """Installed backends and versions, CPU model and the flags that matter, GPUs."""
    from rich.markup import escape

    from edgekit.artifact.environment import cpu_info, gpu_info
    from edgekit.core.backends import KNOWN, USED_FOR, version_of

    table = Table(title="backends")
    for col in ("package", "version", "extra", "used for"):
        table.add_column(col)
    for module, (dist, extra) in KNOWN.items():
        v = version_of(module)
        where = f"edgekit[{extra}]" if extra and extra != "core" else extra or "none (install it alone)"
        table.add_row(dist, v or ("[red]not installed[/red]" if extra else "not installed"), escape(where),
                      escape(USED_FOR.get(module, "")))
    out.print(table)
    from edgekit.checks import emulate
    from edgekit.runtimes.cpu_classes import DESCRIPTIONS, QEMU_MODELS, classify, describe

    cpu = cpu_info()
    out.print(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores)")
    out.print(f"CPU class: {describe(cpu)} — {DESCRIPTIONS.get(classify(cpu), 'unknown')}", markup=False)
    qemu = emulate.qemu_binary()
    out.print("emulated verification: " + (f"{', '.join(f'{c} (qemu {m})' for c, m in QEMU_MODELS.items())} via {qemu}"
                                           if qemu else f"unavailable: {emulate.INSTALL_HINT}"), markup=False)
    flags = cpu["flags"]
    out.print("flags: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in flags.items()))
    gpus = gpu_info()
    out.print("GPU: " + (", ".join(f"{g['name']} (driver {g['driver']})" for g in gpus) if gpus else "none"))


@app.command()
def inspect(
    artifact_dir: Path = typer.Argument(..., help="an out/<name> directory (or, with --target, a .onnx file)"),
    target: Optional[list[str]] = typer.Option(None, "--target", help="check offline against an NPU profile "
                                               "(qnn-htp, intel-npu) or a runtime with a compatibility check "
                                               "(repeatable); exit 1 if any node cannot run there"),
) -> None:
    """Show what an artifact holds: files, stages, metrics and latency; with --target, every node
    a target cannot run (op type, name, position, why, the rewrite that fixes it)."""
    from edgekit.artifact.manifest import read_manifest
    from edgekit.checks.verify import unverified_here
    from edgekit.report.markdown import markdown
    from edgekit.runtimes.cpu_classes import local_class

    if target:
        _inspect_targets(artifact_dir, target)
        return
    if artifact_dir.is_file():
        from edgekit.checks.compat import targets
        from edgekit.errors import UsageError

        raise UsageError(f"{artifact_dir}: a model file; give --target to check it (allowed: {', '.join(targets())}) "
                         "or an out/<name> directory to show")
    manifest = read_manifest(artifact_dir)
    out.print(markdown(manifest), markup=False, highlight=False)
    warning = unverified_here(manifest, local_class())
    if warning:
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _inspect_targets(path: Path, names: list[str]) -> None:
    from edgekit.checks.compat import checker, model_files

    found = 0
    for name in names:
        check = checker(name)  # an unknown target fails before any file is read
        for label, f in model_files(path, name):
            problems = check(f)
            found += len(problems)
            out.print(f"{label} on {name}: {len(problems)} problem(s)" + ("" if problems else " — runs as is"),
                      markup=False, highlight=False, soft_wrap=True)
            for p in problems:
                out.print(f"  {p.line()}", markup=False, highlight=False, soft_wrap=True)
    if found:
        raise typer.Exit(1)


@app.command()
def profile(
    what: Path = typer.Argument(..., help="out/<name> dir, a model file a runtime opens (.onnx, .xml, .engine, ...) or recipe .yaml (torch eager)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="a runtime from `edgekit stages` (default: by format)"),
    device: str = typer.Option("local", "--device", help="a device named in --devices, or local"),
    devices: Optional[Path] = typer.Option(None, "--devices", help="devices.yaml (default: ./devices.yaml if present and --device is not local)"),
    output: Path = typer.Option(Path("profile.json"), "--output", "-o", help="where profile.json is written"),
    threads: int = typer.Option(2, "--threads", min=1),
    warmup: float = typer.Option(1.0, "--warmup", min=0.0, help="warm-up seconds"),
    min_duration: float = typer.Option(3.0, "--min-duration", min=0.0, help="timed seconds, at least"),
    min_iters: int = typer.Option(64, "--min-iters", min=1, help="timed runs, at least (a 99% p90 bound needs 44; MLPerf uses 64)"),
    max_duration: float = typer.Option(60.0, "--max-duration", min=0.001, help="hard cap on timed seconds"),
    in_process: bool = typer.Option(False, "--in-process", help="ONNX Runtime/OpenVINO in this process, not a fresh one"),
    energy: str = typer.Option("none", "--energy", help="none | auto | rapl | nvml | jetson | external | estimate"),
    energy_csv: Optional[str] = typer.Option(None, "--energy-csv", help="external meter log (timestamp, watts)"),
    tdp_w: Optional[float] = typer.Option(None, "--tdp-w", help="estimate: the CPU's TDP in watts"),
    idle_s: float = typer.Option(2.0, "--idle-s", min=0.0, help="idle power window before the run"),
) -> None:
    """Measure latency (and energy where a meter exists) of an artifact or model on a device;
    write a versioned profile.json."""
    from pydantic import ValidationError

    from edgekit.artifact.files import write_json
    from edgekit.errors import UsageError
    from edgekit.profile.command import profile as run_profile
    from edgekit.recipe import ProfileSpec

    try:
        spec = ProfileSpec(warmup_s=warmup, min_duration_s=min_duration, min_iters=min_iters, max_duration_s=max_duration,
                           threads=threads, isolation="in_process" if in_process else "subprocess",
                           energy={"meter": energy, "csv": energy_csv, "tdp_w": tdp_w, "idle_s": idle_s})
    except ValidationError as exc:
        e = exc.errors()[0]
        raise UsageError(f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}; "
                         f"got {e.get('input')!r}") from None
    if devices is None and device != "local" and Path("devices.yaml").is_file():  # local never needs it
        devices = Path("devices.yaml")
    _output_file(output, "--output")
    from edgekit.profile.command import is_lm_dir

    if is_lm_dir(what):
        _profile_generation(what, spec, backend, device, output)
        return
    with _progress(sys.stderr.isatty()) as progress:
        result = run_profile(what, spec, backend, device, devices, progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, result.to_json())
    table = Table(title=f"profile → {output}")
    for col in ("key", "device", "n", "p50 ms", "p90 ms", "p90 bound", "p99 ms", "cv", "first ms", "load s", "peak MB", "energy"):
        table.add_column(col, justify="left" if col in ("key", "device", "energy") else "right")
    for key, m in result.measurements.items():
        e = m.energy
        joules = f" {_fmt(e.net_j_per_inference * 1e3, 3)} mJ net/inf" if e.net_j_per_inference is not None else ""
        table.add_row(key, m.device.name, str(m.n), _fmt(m.median_ms, 3), _fmt(m.p90_ms, 3), _fmt(m.p90_upper_bound_ms, 3),
                      _fmt(m.p99_ms, 3), _fmt(m.cv, 2), _fmt(m.first_inference_ms, 2), _fmt(m.load_s, 3),
                      _fmt(m.peak_rss_mb, 0), f"{e.provenance}{joules}")
    out.print(table)
    for key, m in result.measurements.items():
        if m.energy.reason:
            out.print(f"energy {key}: {m.energy.provenance}: {m.energy.reason}", markup=False, highlight=False)


def _profile_generation(what: Path, spec: Any, backend: Optional[str], device: str, output: Path) -> None:
    from edgekit.artifact.files import write_json
    from edgekit.profile.command import profile_generation

    with _progress(sys.stderr.isatty()) as progress:
        result = profile_generation(what, spec, backend, device, progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, result)
    table = Table(title=f"generation profile → {output}")
    first = result["prompt_tokens"][0] if result["prompt_tokens"] else None
    for col in ("key", "decode ms/token p50", "p90", "p90 bound", "decode tok/s", f"TTFT ms ({first} tokens)",
                "TTFT p90 bound", "load s", "peak MB"):
        table.add_column(col, justify="left" if col == "key" else "right")
    for key, g in result["generation"].items():
        d, t = g["decode_ms_per_token"], g["prompts"].get(str(first), {}).get("ttft_ms", {})
        table.add_row(key, _fmt(d["median_ms"], 3), _fmt(d["p90_ms"], 3), _fmt(d["p90_upper_bound_ms"], 3),
                      _fmt(g["decode_tokens_per_s"], 1), _fmt(t.get("median_ms"), 2), _fmt(t.get("p90_upper_bound_ms"), 2),
                      _fmt(g["load_s"], 2), _fmt(g["peak_rss_mb"], 0))
    out.print(table)


@app.command()
def gate(
    artifact_dir: Optional[Path] = typer.Argument(None, help="an out/<name> directory (default: out/<recipe name>)"),
    recipe: Optional[Path] = typer.Option(None, "--recipe", "-r", help="budgets from its gates: (default: the artifact's recipe)"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="profile.json to gate (default: the artifact's)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="profile.json measured earlier, same model/runtime/device"),
    ab: Optional[tuple[Path, Path]] = typer.Option(None, "--ab", help="BASE CANDIDATE: .onnx files or artifact dirs, timed interleaved"),
    artifact: Optional[list[str]] = typer.Option(None, "--artifact", help="gate only this artifact or <artifact>/<runtime> (repeatable)"),
    min_effect: Optional[float] = typer.Option(None, "--min-effect", help="relative slowdown that fails (default: gates.regression_max, 0.10)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="runtime for --ab (default: the recipe's first target)"),
    rounds: int = typer.Option(20, "--rounds", min=1, help="--ab: interleaved rounds"),
    block_s: float = typer.Option(0.1, "--block-s", min=0.0, help="--ab: seconds per timed block"),
    reopen: int = typer.Option(1, "--reopen", min=0, help="--ab: open both models afresh every N rounds (0: never)"),
    strict: bool = typer.Option(False, "--strict", help="inconclusive exits 1 instead of 3"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML here"),
    summary: Optional[Path] = typer.Option(None, "--summary", help="append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)"),
) -> None:
    """Check budgets, a baseline or an interleaved A/B run. Exit 0 pass, 1 regression or budget
    broken, 2 usage error, 3 inconclusive (1 with --strict), 4 backend or meter unavailable."""
    from edgekit.gate import ci
    from edgekit.gate.ab import AbSettings
    from edgekit.gate.run import GateRequest, run_gate

    req = GateRequest(recipe=recipe, artifact_dir=artifact_dir, profile=profile, baseline=baseline, ab=ab,
                      select=list(artifact or []), min_effect=min_effect, backend=backend,
                      ab_settings=AbSettings(rounds=rounds, block_s=block_s, reopen=reopen))
    for path, option in ((junit, "--junit"), (summary, "--summary")):
        if path is not None:
            _output_file(path, option)
    with _progress(ab is not None and sys.stderr.isatty()) as progress:
        result = run_gate(req, progress("A/B rounds", rounds) if ab is not None else (lambda n: None))
    table = Table(title=result.verdict(strict))
    for col in ("check", "subject", "status", "measured", "limit", "detail"):
        table.add_column(col, justify="right" if col in ("measured", "limit") else "left")
    colors = {"pass": "green", "fail": "red", "inconclusive": "yellow", "unavailable": "magenta"}
    from rich.markup import escape

    for c in result.checks:  # subjects and details are data, not rich markup ("edgekit[report]")
        table.add_row(f"{c.kind}: {c.name}", escape(c.subject), f"[{colors[c.status]}]{c.status}[/]",
                      ci.fmt_value(c.measured, c.unit), ci.fmt_value(c.limit, c.unit), escape(c.detail))
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    if junit is not None:
        ci.write(junit, ci.junit(result, strict))
    if summary is not None:
        ci.write(summary, ci.markdown(result, strict), append=True)
    error = result.error(strict)
    if error is not None:
        raise error


@app.command()
def report(artifact_dir: Path = typer.Argument(..., help="an out/<name> directory")) -> None:
    """Rebuild report.md and the self-contained report.html of an artifact directory."""
    from edgekit.report.html import rebuild

    for path in rebuild(artifact_dir):
        out.print(f"wrote {path}", markup=False, highlight=False)


@app.command("verify")
def verify_cmd(
    artifact_dir: Path = typer.Argument(..., help="an out/<name> directory"),
    runtime: Optional[list[str]] = typer.Option(None, "--runtime", help="only these runtimes"),
    cpu: Optional[list[str]] = typer.Option(None, "--cpu", help="CPU class to verify on: this machine's natively, "
                                            "x86-avx2 / x86-sse under QEMU (repeatable; default: this machine)"),
    threads: int = typer.Option(2, "--threads", min=1),
) -> None:
    """Re-verify an artifact from its manifest: file hashes, then parity on each runtime, here or
    under an emulated CPU class; passing results are recorded in the manifest's verified_on."""
    from edgekit.artifact.manifest import read_manifest
    from edgekit.checks.verify import reverify, unverified_here
    from edgekit.errors import UsageError
    from edgekit.runtimes.cpu_classes import CLASSES, local_class

    bad = [c for c in cpu or () if c not in CLASSES]
    if bad:
        raise UsageError(f"verify: --cpu {bad[0]!r} is not a CPU class; allowed: {', '.join(CLASSES)}")
    before = unverified_here(read_manifest(artifact_dir), local_class())
    table = Table(title=f"verify {artifact_dir}")
    for col in ("artifact", "runtime", "cpu class", "mode", "samples", "cosine", "worst", "max abs", "top-1 agr.",
                "perplexity"):
        table.add_column(col)
    for r in reverify(artifact_dir, runtime, threads, cpu):
        table.add_row(r["artifact"], r["runtime"], r["cpu_class"], r["mode"], str(r["samples"]), _fmt(r["cosine_mean"]),
                      _fmt(r["cosine_worst"]), _fmt(r.get("max_abs_err")), _fmt(r.get("top1_agreement")),
                      _fmt(r.get("perplexity")))
    out.print(table)
    if before and not cpu:  # said after the run, so that a failure stays one line
        err.print(f"note: {before.split(';')[0]}; now verified here and recorded in manifest.json",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="sweep YAML: base recipe, settings to vary, devices, objective, search"),
    out_dir: Path = typer.Option(Path("out"), "--out", "-o", help="where <sweep name>/ is written"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster (default: start a local one)"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1,
                                                 help="settings in flight at once (default: the cluster's CPUs)"),
    resume: bool = typer.Option(False, "--resume", help="continue a sweep that was interrupted"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Find the best recipe per device by measuring: run a base recipe with settings varied on
    each device (on Ray), keep every trial, write the Pareto front and the chosen recipe per device."""
    from edgekit.sweep import run as run_sweep
    from edgekit.sweep.report import HEADER, rows, table_rows

    with _progress(not quiet and sys.stderr.isatty()) as progress:
        result = run_sweep(sweep_file, out_dir, address=address, max_concurrent=max_concurrent, resume=resume,
                           progress=progress)
    s = result.summary
    table = Table(title=f"sweep {s['name']} → {result.out_dir}  ({result.started} trials run, {result.cached} from cache)")
    for col in HEADER:
        table.add_column(col, justify="left" if col in ("trial", "device", "cpu class", "settings", "runtime", "status") else "right")
    from rich.markup import escape

    for r in table_rows(rows(s["trials"])):
        table.add_row(*(escape(c) for c in r))
    out.print(table)
    for device, c in s["chosen"].items():
        if c is None:
            out.print(f"{device}: no trial met the objective", markup=False, highlight=False)
        else:
            out.print(f"{device} ({c['cpu_class']}): chosen {c['runtime']} p90 {c['latency_p90_ms']:.3f} ms, "
                      f"{c['metric']} {c['value']:.4f} → {result.out_dir / c['recipe']}", markup=False, highlight=False)
    out.print(f"wrote {result.out_dir / 'sweep.json'} and {result.out_dir / 'sweep.html'}", markup=False, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
