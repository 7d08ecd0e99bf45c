"""What CI reads: JUnit XML (one testcase per check) and a Markdown summary (for
$GITHUB_STEP_SUMMARY or a pull-request comment). Written with the standard library: JUnit is a
handful of elements and needs no dependency."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from edgekit.gate import GateResult

ICON = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "unavailable": "⛔ unavailable"}


def fmt_value(v: Optional[float], unit: str) -> str:
    return "–" if v is None else f"{v:.4g}{(' ' + unit) if unit else ''}"


def junit(result: GateResult, strict: bool = False) -> str:
    """fail -> <failure>; unavailable -> <error>; inconclusive -> <skipped>, or <failure> with
    --strict, so a CI dashboard shows what the exit code means."""
    n = result.counts()
    failures = n["fail"] + (n["inconclusive"] if strict else 0)
    suite = ET.Element("testsuite", name="edgekit.gate", tests=str(len(result.checks)), failures=str(failures),
                       errors=str(n["unavailable"]), skipped=str(0 if strict else n["inconclusive"]))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgekit.gate.{c.kind}", name=f"{c.name} {c.subject}")
        msg = c.detail
        if c.status == "fail" or (c.status == "inconclusive" and strict):
            ET.SubElement(case, "failure", message=msg, type=c.status).text = msg
        elif c.status == "unavailable":
            ET.SubElement(case, "error", message=msg, type="unavailable").text = msg
        elif c.status == "inconclusive":
            ET.SubElement(case, "skipped", message=msg)
        else:
            ET.SubElement(case, "system-out").text = msg
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def markdown(result: GateResult, strict: bool = False) -> str:
    lines = [f"### edgekit gate: {result.verdict(strict)}", "",
             "| check | subject | status | measured | limit | detail |", "|---|---|---|---|---|---|"]
    for c in result.checks:
        detail = c.detail.replace("|", "\\|")
        lines.append(f"| {c.kind}: {c.name} | {c.subject} | {ICON[c.status]} | {fmt_value(c.measured, c.unit)} | "
                     f"{fmt_value(c.limit, c.unit)} | {detail} |")
    lines += [""] + [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    return "\n".join(lines)


def write(path: Path, text: str, append: bool = False) -> None:
    """`append` for $GITHUB_STEP_SUMMARY, which other steps' tools may write to as well."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as f:
        f.write(text)
