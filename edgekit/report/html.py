"""report.html: the run in one self-contained page (inline CSS and base64 PNG figures; no
scripts, no network). Built from the artifact directory alone (manifest.json, profile.json,
sensitivity.json), so `edgekit report DIR` can rebuild it any time after `compress`.

Sections whose data is absent say so in the page instead of disappearing, so a reader can tell
"not measured" from "forgotten"."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

from edgekit.errors import BackendUnavailable, UsageError
from edgekit.report.rows import (
    GENERATION_HEADERS,
    VERIFIED_HEADERS,
    ReportRows,
    fmt,
    report_rows,
    summary_cells,
    summary_headers,
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1b1f24}
h1{margin-bottom:4px} h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
td.l,th{text-align:left} th{background:#f6f8fa}
.muted{color:#57606a} .warn{color:#9a6700} img{max-width:100%} code{background:#f6f8fa;padding:1px 4px}
"""

LOWER_IS_BETTER = ("mse",)


def _e(v: Any) -> str:
    return html.escape(str(v))


def _is_number(v: Any) -> bool:
    try:
        float(str(v))
        return True
    except ValueError:
        return str(v) == "–"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Numbers right-aligned, text left-aligned (per cell: columns mix both)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{"" if _is_number(c) else " class=l"}>{_e(c)}</td>' for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(alt: str, plot: Callable[..., str], *args: Any) -> str:
    """A figure, or, without matplotlib, a visible line saying what is missing and how to get it
    (the page's tables still hold every number)."""
    try:
        b64 = plot(*args)
    except BackendUnavailable as exc:
        return f'<p class="warn">{_e(alt)}: figure not drawn: {_e(exc)}</p>'
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _note(text: str) -> str:
    return f'<p class="muted">{_e(text)}</p>'


def _profile(artifact_dir: Path) -> tuple[Optional[Any], str]:
    from edgekit.profile.schema import load_profile

    if not (artifact_dir / "profile.json").is_file():
        return None, "no profile.json: profiling was disabled for this run"
    try:
        return load_profile(artifact_dir / "profile.json"), ""
    except UsageError as exc:
        return None, f"profile.json could not be read: {exc}"


def _latency(profile: Any, why: str) -> str:
    from edgekit.report.plots import latency_cdf

    if profile is None:
        return _note(why)
    ms = profile.measurements
    with_samples = {k: m.samples_ms for k, m in ms.items() if m.samples_ms}
    rows = [[k, m.runtime, m.n, fmt(m.median_ms, 3), fmt(m.p90_ms, 3), fmt(m.p90_upper_bound_ms, 3),
             fmt(m.p99_ms, 3), fmt(m.cv, 3), fmt(m.first_inference_ms, 3), fmt(m.load_s, 3),
             fmt(m.peak_rss_mb, 1), m.threads] for k, m in ms.items()]
    parts = [_table(["measurement", "runtime", "n", "median ms", "p90 ms", "p90 bound ms", "p99 ms", "CV",
                     "first ms", "load s", "peak RSS MB", "threads"], rows)]
    if with_samples:
        parts.append(_img("latency CDF", latency_cdf, with_samples,
                          {k: ms[k].p90_upper_bound_ms for k in with_samples}))
    else:
        parts.append(_note("profile.json keeps no raw samples: no distribution to draw"))
    return "".join(parts)


def _accuracy(rows: ReportRows, profile: Any) -> str:
    from edgekit.report.plots import accuracy_vs_latency

    metric = next((r["metric"] for r in rows.summary if r["artifact"] == "reference"), None)
    if profile is None or metric is None:
        return _note("needs both a task metric and a profile")
    points = []
    for r in rows.summary:
        key = f"{r['artifact']}/{r['runtime']}"
        m = profile.measurements.get(key)
        if m is not None and r["value"] is not None:
            points.append({"label": key, "latency_ms": m.median_ms, "value": r["value"]})
    if not points:
        return _note("no artifact has both a metric and a latency")
    return _img("accuracy vs latency", accuracy_vs_latency, points, metric, metric not in LOWER_IS_BETTER)


def _language_model(rows: ReportRows) -> str:
    """The quality and speed table, perplexity against decode time per token (the Pareto front
    of what to ship), and prefill / decode speeds side by side."""
    from edgekit.report.plots import accuracy_vs_latency, bars

    parts = [_table(GENERATION_HEADERS, rows.generation)]
    pts = rows.generation_points
    if not pts:
        return "".join(parts) + _note("no generation profile (profile.enabled: false): no speed figures")
    parts.append(_img("perplexity vs decode time", accuracy_vs_latency, pts, "perplexity", False,
                      "median decode time per token (ms, log scale)",
                      "Perplexity vs decode time per artifact and runtime"))
    for what in ("prefill", "decode"):
        speeds = {p["label"]: p[f"{what}_tokens_per_s"] for p in pts if p.get(f"{what}_tokens_per_s")}
        if speeds:
            parts.append(_img(f"{what} speed", bars, speeds, f"{what} tokens/s (batch 1)",
                              f"{what.capitalize()} speed"))
    return "".join(parts)


def _sizes(rows: ReportRows) -> str:
    from edgekit.report.plots import bars

    sizes = rows.sizes_mb
    if not sizes:
        return _note("no artifacts")
    return _img("artifact sizes", bars, sizes, "MB (10^6 bytes)", "Artifact size")


def _energy(profile: Any) -> str:
    from edgekit.report.plots import bars

    if profile is None:
        return _note("no profile")
    rows, per_inf = [], {}
    for k, m in profile.measurements.items():
        e = m.energy
        meter = f"{e.meter.name} ({e.meter.kind}, {e.meter.scope})" if e.meter else "–"
        net = None if e.net_j_per_inference is None else e.net_j_per_inference * 1000
        gross = None if e.gross_j_per_inference is None else e.gross_j_per_inference * 1000
        rows.append([k, e.provenance, meter, fmt(e.idle_w, 3), fmt(e.avg_power_w, 3), fmt(gross, 4), fmt(net, 4),
                     e.reason or "–"])
        if net is not None or gross is not None:
            per_inf[f"{k} [{e.provenance}]"] = net if net is not None else gross
    parts = [_table(["measurement", "provenance", "meter", "idle W", "avg W", "gross mJ/inf", "net mJ/inf", "reason"],
                    rows)]
    if per_inf:
        parts.append(_img("energy per inference", bars, per_inf, "mJ per inference (net of idle where measured)",
                          "Energy per inference"))
    return "".join(parts)


def _lossless(row: dict[str, Any]) -> bool:
    return bool(row.get("lossless")) or (row["sqnr_db"] is not None and not math.isfinite(row["sqnr_db"]))


def _sensitivity(artifact_dir: Path, top: int = 25) -> str:
    """sensitivity.json as `edgekit.quantize.sensitivity.document` writes it."""
    from edgekit.report.plots import bars

    p = artifact_dir / "sensitivity.json"
    if not p.is_file():
        return _note("no sensitivity.json (enable sensitivity: true on a quantize stage to measure it)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        nodes = data["nodes"]
        # lossless rows: "sqnr_db": null with "lossless": true (older files: Infinity)
        finite = sorted((n for n in nodes if not _lossless(n)), key=lambda n: float(n["sqnr_db"]))[:top]
        values = {n["node"]: float(n["sqnr_db"]) for n in finite}
    except (ValueError, KeyError, TypeError) as exc:
        return (f'<p class="warn">sensitivity.json has an unexpected shape ({_e(type(exc).__name__)}: {_e(exc)}); '
                'expected {"nodes": [{"node": ..., "sqnr_db": ...}]}</p>')
    lossless = sum(1 for n in nodes if _lossless(n))
    parts = [_note(f"{data.get('method', '')}; {data.get('samples', '?')} samples; {len(nodes)} nodes"
                   + (f", {lossless} unchanged when quantized alone (SQNR +inf, not drawn)" if lossless else ""))]
    if values:
        parts.append(_img("sensitivity", bars, values,
                          "SQNR of the model output when only this node is quantized (dB, lower = more sensitive)",
                          f"Per-node quantization sensitivity ({len(values)} most sensitive of {len(nodes)})"))
    metric = data.get("metric")
    if metric and any("metric" in n for n in finite):
        parts.append(_table(["node", "SQNR dB", f"{metric} with only it quantized"],
                            [[n["node"], fmt(n["sqnr_db"], 2), fmt(n.get("metric"))] for n in finite]))
    return "".join(parts)


def _sparsity(rows: ReportRows) -> str:
    from edgekit.report.plots import bars

    parts = [_img(f"sparsity {kind}", bars, sp, "fraction of zero weights", f"Per-layer sparsity after {kind}")
             for kind, sp in rows.sparsity]
    return "".join(parts) or _note("no stage recorded per-layer sparsity")


def _pruning(rows: ReportRows) -> str:
    """Parameters and MACs before/after and the changed layers, per pruning stage."""
    parts = []
    for t in rows.pruning:
        parts.append(f"<h3>{_e(t.kind)}</h3>" + _table(["", "before", "after", "after / before"], t.totals))
        if t.dropped:
            parts.append(f"<p>Dropped: {_e(', '.join(t.dropped))}</p>")
        if t.layers:
            parts.append(_table(["layer", "in", "out", "sparsity"], t.layers))
        if t.more:
            parts.append(_note(f"{t.more} more changed layers in manifest.json"))
    return "".join(parts) or _note("no pruning stage")


def render(artifact_dir: Path, manifest: dict[str, Any], rows: Optional[ReportRows] = None) -> str:
    """The page for an artifact directory (its manifest passed in: compress renders it before
    manifest.json is written)."""
    profile, why = _profile(artifact_dir)
    rows = rows or report_rows(manifest)
    summary = _table(summary_headers(rows.cpu_class), [summary_cells(r) for r in rows.summary])
    stages = _table(["stage", "seconds", "outputs"], rows.stages)
    skipped = "".join(f"<li>{_e(s)}</li>" for s in rows.skipped)
    src = manifest["source_model"]
    warnings = "".join(f'<p class="warn">{_e(w)}</p>' for w in rows.warnings)
    where = _note(rows.verified_note) + _table(VERIFIED_HEADERS, rows.verified)
    sections = [
        ("Summary", warnings + summary + (f"<p>Not run:</p><ul>{skipped}</ul>" if skipped else "")),
        ("Where it is known good", where),
        *([("Language model", _language_model(rows))] if rows.generation else []),
        ("Latency", _latency(profile, why)),
        ("Accuracy vs latency", _accuracy(rows, profile)),
        ("Size", _sizes(rows)),
        ("Energy", _energy(profile)),
        ("Quantization sensitivity", _sensitivity(artifact_dir)),
        ("Pruning", _pruning(rows)),
        ("Sparsity", _sparsity(rows)),
        ("Stages", stages),
        ("Environment", _table(["component", "version"], rows.environment)),
    ]
    body = "".join(f'<section id="{_e(t.lower().replace(" ", "-"))}"><h2>{_e(t)}</h2>{c}</section>'
                   for t, c in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(manifest['name'])} · edgekit report</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(manifest['name'])}</h1>"
        f"<p class=\"muted\">edgekit {_e(manifest['edgekit_version'])} · created {_e(manifest['created'])} · "
        f"recipe sha256 <code>{_e(manifest['recipe_sha256'][:12])}</code> · source <code>{_e(src['ref'])}</code> "
        f"({_e(src['kind'])})</p>{body}</body></html>\n"
    )


def write_reports(artifact_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Write report.md and report.html into the artifact dir; return their manifest file entries."""
    from edgekit.artifact.files import file_entry
    from edgekit.report import markdown

    rows = report_rows(manifest)
    md, page = artifact_dir / "report.md", artifact_dir / "report.html"
    md.write_text(markdown.render(rows), encoding="utf-8")
    page.write_text(render(artifact_dir, manifest, rows), encoding="utf-8")
    return [file_entry(artifact_dir, md, "markdown"), file_entry(artifact_dir, page, "html")]


def _finite(data: Any) -> Any:
    """An older manifest may hold Infinity (a lossless sensitivity row) or NaN, which strict JSON
    cannot: a lossless row becomes `"sqnr_db": null, "lossless": true`, any other value null."""
    if isinstance(data, dict):
        out = {k: _finite(v) for k, v in data.items()}
        if isinstance(data.get("sqnr_db"), float) and math.isinf(data["sqnr_db"]) and data["sqnr_db"] > 0:
            out["lossless"] = True
        return out
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return None if isinstance(data, float) and not math.isfinite(data) else data


def rebuild(artifact_dir: Path) -> list[Path]:
    """`edgekit report DIR`: re-render both reports from what the directory holds and refresh
    their sha256 entries, so the manifest keeps describing every file in it."""
    from edgekit.artifact.files import write_json
    from edgekit.artifact.manifest import MANIFEST, read_manifest

    manifest = _finite(read_manifest(artifact_dir))
    entries = write_reports(artifact_dir, manifest)
    paths = {e["path"] for e in entries}
    manifest["files"] = [f for f in manifest["files"] if f["path"] not in paths] + entries
    write_json(artifact_dir / MANIFEST, manifest)
    return [artifact_dir / e["path"] for e in entries]
