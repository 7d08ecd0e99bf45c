"""report.md: the rows of `report.rows` as plain Markdown (no network resources)."""

from __future__ import annotations

from typing import Any

from edgekit.report.rows import (
    GENERATION_HEADERS,
    LATENCY_HEADERS,
    VERIFIED_HEADERS,
    ReportRows,
    report_rows,
    summary_cells,
    summary_headers,
)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(manifest: dict[str, Any]) -> str:
    return render(report_rows(manifest))


def render(r: ReportRows) -> str:
    cls = r.cpu_class
    lines = [f"# {r.name}", "", r.header, "", f"Latencies measured on {cls} ({r.cpu_model}).", ""]
    lines += _table(summary_headers(cls), [summary_cells(row) for row in r.summary])
    if r.generation:
        lines += ["", f"## Language model: quality and generation speed ({cls}, batch 1)", ""]
        lines += _table(GENERATION_HEADERS, r.generation)
    if r.latency:
        lines += ["", "## Latency and energy", ""] + _table(LATENCY_HEADERS, r.latency)
    if r.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r.warnings]
    lines += ["", "## Where it is known good", "", r.verified_note, ""] + _table(VERIFIED_HEADERS, r.verified)
    if r.normalization:
        n = r.normalization
        lines += ["", "## Source normalisation", "", f"{n.before} → {n.after}", ""]
        lines += [f"- {s}" for s in n.steps] + [f"- not done: {s}" for s in n.not_done]
    lines += ["", "## Stages", ""]
    lines += [f"- `{kind}` ({seconds} s) → {outputs}" for kind, seconds, outputs in r.stages]
    lines += [f"- **warning**: {w}" for w in r.stage_warnings]
    for t in r.sensitivity:
        lines += ["", f"## Quantization sensitivity (`{t.kind}`, {t.samples} samples, {t.nodes} nodes; "
                      "most sensitive first)", ""]
        lines += _table(["node", "SQNR dB", "metric, only this node quantized"],
                        [[f"`{node}`", db, metric] for node, db, metric in t.rows])
        if t.accuracy_aware:
            lines += ["", t.accuracy_aware]
    for t in r.pruning:
        lines += ["", f"## Pruning (`{t.kind}`)", ""] + _table(["", "before", "after", "after / before"], t.totals)
        if t.dropped:
            lines += ["", "Dropped: " + ", ".join(f"`{d}`" for d in t.dropped)]
        if t.layers:
            lines += [""] + _table(["layer", "in", "out", "sparsity"], [[f"`{row[0]}`", *row[1:]] for row in t.layers])
            if t.more:
                lines.append(f"| … {t.more} more layers in manifest.json | | | |")
    lines += ["", "## Environment", "", f"- CPU: {r.environment[0][1]}",
              f"- Python {r.environment[1][1]}; " + ", ".join(f"{k} {v}" for k, v in r.environment[2:]),
              f"- profile threads: {r.threads}", ""]
    return "\n".join(lines)
