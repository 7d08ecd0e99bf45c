"""What a sweep leaves behind: sweep.json (every trial: settings, device, CPU class, metric,
latency statistics, status), the Pareto front and the chosen recipe per device (a ready YAML
under chosen/), and sweep.html with one accuracy-vs-p90 plot per device (base64 PNG, no
scripts, like report.html). Rebuilt from the trial records alone, cached or new."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from pathlib import Path
from typing import Any, Optional

import yaml

from edgekit.artifact.files import write_json
from edgekit.errors import BackendUnavailable
from edgekit.sweep import pareto
from edgekit.sweep.spec import Sweep, device_slug

SCHEMA = 1


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (trial, runtime); a failed trial is one row with its error."""
    out = []
    for r in records:
        base = {"trial": r["id"], "device": r["device"], "cpu_class": r.get("cpu_class", ""),
                "settings": r["settings"], "status": r["status"], "error": r.get("error"),
                "cached": bool(r.get("cached"))}
        if r["status"] != "ok" or not r.get("results"):
            out.append({**base, "runtime": None})
            continue
        for res in r["results"]:
            out.append({**base, **res})
    return out


def _points(table: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [r for r in table if r["device"] == device and r["status"] == "ok" and r.get("latency_p90_ms") is not None]


def fronts(table: list[dict[str, Any]], sweep: Sweep) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Optional[dict[str, Any]]]]:
    """Per device: the Pareto front (accuracy vs p90) and the chosen row under the objective."""
    front: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, Optional[dict[str, Any]]] = {}
    for device in sweep.spec.devices:
        pts = _points(table, device)
        idx = pareto.front([(p["latency_p90_ms"], pareto.quality(p)) for p in pts])
        front[device] = [pts[i] for i in idx]
        c = pareto.choose(pts, sweep.spec.objective)
        chosen[device] = pts[c] if c is not None else None
    return front, chosen


def _ref(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("trial", "runtime", "artifact", "settings", "metric", "value", "drop", "fidelity", "size_mb",
            "latency_p50_ms", "latency_p90_ms", "cpu_class")
    return {k: row.get(k) for k in keys}


def chosen_recipe(sweep_dir: Path, sweep: Sweep, device: str, row: dict[str, Any]) -> Path:
    """The winning trial's recipe, narrowed to the winning runtime when the schema allows it,
    named for the device, with a header saying where it came from."""
    from edgekit.errors import RecipeError
    from edgekit.recipe import parse_recipe

    data = yaml.safe_load((sweep_dir / "trials" / row["trial"] / "recipe.yaml").read_text(encoding="utf-8"))
    data["name"] = f"{data['name']}-{device_slug(device)}"[:100]
    narrowed = {**data, "targets": [row["runtime"]]}
    try:
        parse_recipe(narrowed, "chosen")
        data = narrowed
    except RecipeError:
        pass
    header = (f"# chosen by edgekit sweep {sweep.spec.name} for device {device} ({row.get('cpu_class')}): "
              f"{row['runtime']} {row['artifact']}, p90 {row['latency_p90_ms']:.3f} ms, "
              f"{row['metric']} {row['value']:.4f} (drop {row['drop']:.4f}); trial {row['trial']}\n"
              f"# paths in it are relative to {sweep.base_path.parent}\n")
    out = sweep_dir / "chosen" / f"{device_slug(device)}.yaml"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(out)
    return out


def write(sweep_dir: Path, sweep: Sweep, records: list[dict[str, Any]], tasks: list[dict[str, Any]],
          devices: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Optional[Path]]]:
    def order(r: dict[str, Any]) -> tuple:  # per device: fastest measured first, failures last
        p90 = min((x.get("latency_p90_ms") or float("inf") for x in r.get("results") or []), default=float("inf"))
        return (r["device"], r["status"] != "ok", p90, r["id"])

    records = sorted(records, key=order)
    table = rows(records)
    front, chosen = fronts(table, sweep)
    paths = {d: (chosen_recipe(sweep_dir, sweep, d, row) if row else None) for d, row in chosen.items()}
    summary = {
        "schema": SCHEMA,
        "name": sweep.spec.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sweep_file": str(sweep.path),
        "sweep_sha256": sweep.sha256,
        "base": str(sweep.base_path),
        "objective": sweep.spec.objective.model_dump(mode="json"),
        "search": sweep.spec.search.model_dump(mode="json"),
        "devices": devices,
        "trials": [{k: v for k, v in r.items()} for r in records],
        "pareto": {d: [_ref(r) for r in f] for d, f in front.items()},
        "chosen": {d: ({**_ref(row), "recipe": str(paths[d].relative_to(sweep_dir))} if row else None)
                   for d, row in chosen.items()},
        "tasks": tasks,  # this run's tasks: where and when each ran (empty when all came from the cache)
    }
    write_json(sweep_dir / "sweep.json", summary)
    page = render(sweep, table, front, chosen)
    tmp = sweep_dir / ".sweep.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(sweep_dir / "sweep.html")
    return summary, paths


# ------------------------------------------------------------------------------------------
# sweep.html


def _e(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: Any, digits: int = 4) -> str:
    from edgekit.report.rows import fmt

    return fmt(v, digits)


def _settings(s: dict[str, Any]) -> str:
    """Settings as a table cell: each path by its last field name (`calibration=minmax`), the
    whole path only where two paths end alike; sweep.json keeps the full paths."""
    import re

    last = {k: re.split(r"[.\[]", k.rstrip("]"))[-1] for k in s}
    names = list(last.values())
    return ", ".join(f"{last[k] if names.count(last[k]) == 1 and not last[k].isdigit() else k}={v}"
                     for k, v in s.items())


def plot(device: str, points: list[dict[str, Any]], front: list[dict[str, Any]], chosen: Optional[dict[str, Any]]) -> str:
    """Accuracy (metric value) against p90 for one device, front joined, chosen starred."""
    from edgekit.core.backends import require

    matplotlib = require("matplotlib", extra="report", why="sweep.html plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    on = {(p["trial"], p["runtime"]) for p in front}
    for p in points:
        f = (p["trial"], p["runtime"]) in on
        ax.scatter([p["latency_p90_ms"]], [p["value"]], s=50 if f else 25, marker="o" if f else "x",
                   color="tab:blue" if f else "tab:grey", zorder=3)
    fx = [(p["latency_p90_ms"], p["value"]) for p in front]
    ax.plot([x for x, _ in fx], [y for _, y in fx], color="tab:blue", lw=1, ls="--", label="Pareto front")
    if chosen:
        ax.scatter([chosen["latency_p90_ms"]], [chosen["value"]], s=220, marker="*", color="tab:red", zorder=4,
                   label=f"chosen ({chosen['runtime']}, trial {chosen['trial'][:8]})")
    lat = [p["latency_p90_ms"] for p in points]
    wide = max(lat) / min(lat) > 10  # a log axis only where trials differ by multiples
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel(f"p90 latency on {device} (ms{', log scale' if wide else ''})")
    metric = points[0]["metric"] if points else "metric"
    ax.set_ylabel(str(metric))
    ax.set_title(f"{device}: accuracy vs p90 latency per trial and runtime")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(header: list[str], body: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in header)
    tr = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>"


HEADER = ["trial", "device", "cpu class", "settings", "runtime", "status", "metric", "value", "drop", "fidelity",
          "size MB", "p50 ms", "p90 ms"]


def table_rows(table: list[dict[str, Any]]) -> list[list[str]]:
    """The rows the CLI table and sweep.html show, in HEADER's order."""
    return [[r["trial"][:8], r["device"], r["cpu_class"], _settings(r["settings"]), r.get("runtime") or "–",
             r["status"] + (" (cached)" if r["cached"] else "") + (f": {r['error']}" if r.get("error") else ""),
             _fmt(r.get("metric")), _fmt(r.get("value")), _fmt(r.get("drop")), _fmt(r.get("fidelity")),
             _fmt(r.get("size_mb"), 3), _fmt(r.get("latency_p50_ms"), 3), _fmt(r.get("latency_p90_ms"), 3)]
            for r in table]


def render(sweep: Sweep, table: list[dict[str, Any]], front: dict[str, list[dict[str, Any]]],
           chosen: dict[str, Optional[dict[str, Any]]]) -> str:
    from edgekit.report.html import CSS

    obj = sweep.spec.objective
    limits = ", ".join(f"{k} {v}" for k, v in obj.model_dump().items() if k != "minimize" and v is not None)
    parts = [f"<h1>sweep {_e(sweep.spec.name)}</h1>",
             f"<p class=\"muted\">minimize {_e(obj.minimize)}{' subject to ' + _e(limits) if limits else ''}; "
             f"search {_e(sweep.spec.search.method)}; base {_e(sweep.base_path.name)}</p>"]
    for device in sweep.spec.devices:
        pts = _points(table, device)
        c = chosen[device]
        parts.append(f"<h2>{_e(device)}</h2>")
        if c:
            parts.append(f"<p>chosen: trial <code>{_e(c['trial'])}</code> on {_e(c['runtime'])} "
                         f"({_e(_settings(c['settings']))}): p90 {_fmt(c['latency_p90_ms'], 3)} ms, "
                         f"{_e(c['metric'])} {_fmt(c['value'])} on {_e(c['cpu_class'])}</p>")
        else:
            parts.append('<p class="warn">no trial met the objective on this device</p>')
        if pts:
            try:
                parts.append(f'<img alt="Pareto front {_e(device)}" src="data:image/png;base64,'
                             f'{plot(device, pts, front[device], c)}">')
            except BackendUnavailable as exc:
                parts.append(f'<p class="warn">figure not drawn: {_e(exc)}</p>')
        parts.append("<h3>Pareto front</h3>" + _table(HEADER, table_rows(front[device])))
    parts.append("<h2>All trials</h2>" + _table(HEADER, table_rows(table)))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(sweep.spec.name)} · edgekit sweep</title><style>{CSS}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
