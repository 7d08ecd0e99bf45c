"""report.md: the run summarized from its manifest (plain Markdown, no network resources)."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (artifact, runtime) plus the reference: what the CLI table and report show."""
    rows = []
    ref = manifest["metrics"].get("reference", {})
    prof = manifest.get("profile", {})
    if ref:
        p = prof.get("reference/pytorch", {})
        rows.append({
            "artifact": "reference", "runtime": ref.get("runtime", "pytorch"), "precision": "fp32",
            "size_mb": None, "metric": ref.get("metric"), "value": ref.get("value"), "drop": 0.0,
            "cosine": 1.0, "p50_ms": p.get("median_ms"), "p90_ms": p.get("p90_ms"),
        })
    sizes = {a["name"]: a["bytes"] for a in manifest.get("artifacts", [])}
    precisions = {a["name"]: a["precision"] for a in manifest.get("artifacts", [])}
    for name, per_rt in manifest["metrics"].items():
        if name == "reference":
            continue
        for rt, m in per_rt.items():
            p = prof.get(f"{name}/{rt}", {})
            rows.append({
                "artifact": name, "runtime": rt, "precision": precisions.get(name),
                "size_mb": sizes.get(name, 0) / 1e6, "metric": m.get("metric"), "value": m.get("value"),
                "drop": m.get("drop"), "cosine": m.get("parity", {}).get("cosine_mean"),
                "p50_ms": p.get("median_ms"), "p90_ms": p.get("p90_ms"),
            })
    return rows


def markdown(manifest: dict[str, Any]) -> str:
    rows = summary_rows(manifest)
    lines = [
        f"# {manifest['name']}",
        "",
        f"edgekit {manifest['edgekit_version']} · recipe sha256 `{manifest['recipe_sha256'][:12]}` · "
        f"source `{manifest['source_model']['ref']}` ({manifest['source_model']['kind']})",
        "",
        "| artifact | runtime | precision | size MB | metric | value | drop | cosine | p50 ms | p90 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['artifact']} | {r['runtime']} | {fmt(r['precision'])} | {fmt(r['size_mb'], 3)} | "
            f"{fmt(r['metric'])} | {fmt(r['value'])} | {fmt(r['drop'])} | {fmt(r['cosine'])} | "
            f"{fmt(r['p50_ms'], 3)} | {fmt(r['p90_ms'], 3)} |"
        )
    if manifest.get("profile"):
        lines += ["", "## Latency and energy", "",
                  "| measurement | n | p90 bound ms | p99 ms | peak RSS MB | energy provenance | net mJ/inference |",
                  "|---|---|---|---|---|---|---|"]
        for key, m in manifest["profile"].items():
            e = m.get("energy", {})
            net = e.get("net_j_per_inference")
            why = f": {e['reason']}" if e.get("reason") and e.get("provenance") == "unavailable" else ""
            lines.append(f"| {key} | {m['n']} | {fmt(m.get('p90_upper_bound_ms'), 3)} | {fmt(m.get('p99_ms'), 3)} | "
                         f"{fmt(m.get('peak_rss_mb'), 1)} | {e.get('provenance', '–')}{why} | "
                         f"{fmt(None if net is None else net * 1000)} |")
    lines += ["", "## Stages", ""]
    for s in manifest["stages"]:
        lines.append(f"- `{s['kind']}` ({s['seconds']:.2f} s) → {', '.join(s['outputs']) or '–'}")
    lines += sensitivity_lines(manifest)
    from edgekit.prune.report import pruning_lines

    lines += pruning_lines(manifest)
    env = manifest["environment"]
    lines += ["", "## Environment", "",
              f"- CPU: {env['cpu']['model']} ({env['cpu']['logical_cores']} logical cores)",
              f"- Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
              f"- profile threads: {manifest['recipe']['profile']['threads']}", ""]
    return "\n".join(lines)


def sensitivity_lines(manifest: dict[str, Any], top: int = 10) -> list[str]:
    """The most sensitive nodes of each stage that scanned them (full list in sensitivity.json),
    and the accuracy-aware search's trials."""
    lines: list[str] = []
    for s in manifest["stages"]:
        sens = s.get("measured", {}).get("sensitivity")
        if not sens:
            continue
        lines += ["", f"## Quantization sensitivity (`{s['kind']}`, {sens['samples']} samples, "
                      f"{len(sens['nodes'])} nodes; most sensitive first)", "",
                  "| node | SQNR dB | metric, only this node quantized |", "|---|---|---|"]
        for r in sens["nodes"][:top]:
            lines.append(f"| `{r['node']}` | {fmt(r['sqnr_db'], 1)} | {fmt(r.get('metric'))} |")
        aa = s["measured"].get("accuracy_aware")
        if aa:
            lines += ["", f"Accuracy-aware: {len(aa['trials'])} trials, final {aa['metric']} {fmt(aa['final_metric'])} "
                          f"(drop {fmt(aa['final_drop'])}, budget {aa['max_drop']}); float nodes: "
                          + (", ".join(f"`{n}`" for n in aa["trials"][-1]["float_nodes"]) or "none")]
    return lines
