"""report.md: the run summarized from its manifest (plain Markdown, no network resources)."""

from __future__ import annotations

from typing import Any

from edgekit.runtimes import pytorch


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
        p = prof.get(f"reference/{ref.get('runtime', pytorch.NAME)}", {})  # onnxruntime for an ONNX source
        rows.append({
            "artifact": "reference", "runtime": ref.get("runtime", pytorch.NAME), "precision": "fp32",
            "size_mb": None, "metric": ref.get("metric"), "value": ref.get("value"), "drop": 0.0,
            "cosine": 1.0, "p50_ms": p.get("median_ms"), "p90_ms": p.get("p90_ms"),
        })
    sizes = {a["name"]: a["bytes"] for a in manifest.get("artifacts", [])}
    precisions = {a["name"]: a["precision"] for a in manifest.get("artifacts", [])}
    # a runtime that ran here only under an emulator (the HTP on x86): its latency is the
    # emulator's, not the chip's
    ran = {(a["name"], v.get("runtime"), v.get("mode")) for a in manifest.get("artifacts", [])
           for v in a.get("verified_on") or []}
    emulated = {(n, rt) for n, rt, mode in ran if mode == "emulated" and (n, rt, "native") not in ran}
    for name, per_rt in manifest["metrics"].items():
        if name == "reference":
            continue
        for rt, m in per_rt.items():
            p = prof.get(f"{name}/{rt}", {})
            rows.append({
                "artifact": name, "runtime": f"{rt} (emulator)" if (name, rt) in emulated else rt,
                "precision": precisions.get(name),
                "size_mb": sizes.get(name, 0) / 1e6, "metric": m.get("metric"), "value": m.get("value"),
                "drop": m.get("drop"), "cosine": m.get("parity", {}).get("cosine_mean"),
                "p50_ms": p.get("median_ms"), "p90_ms": p.get("p90_ms"),
            })
    return rows


def cpu_class(manifest: dict[str, Any]) -> str:
    """The class of the machine that measured this manifest (older manifests: from its flags)."""
    from edgekit.cpu import describe

    cpu = manifest["environment"].get("cpu") or {}
    return cpu.get("class") or describe(cpu)


def verified_lines(manifest: dict[str, Any]) -> list[str]:
    """Per artifact and runtime, the CPU classes it passed verification on (native or emulated),
    then the declared classes nobody verified, with the reason."""
    lines = []
    for a in manifest["artifacts"]:
        per_rt: dict[str, list[str]] = {}
        for v in a.get("verified_on") or []:
            if v.get("passed"):
                per_rt.setdefault(v["runtime"], []).append(f"{v['cpu_class']} ({v['mode']})")
        for rt, where in per_rt.items():
            lines.append(f"verified {a['name']} on {rt}: {', '.join(where)}")
    for cls, why in ((manifest.get("deploy") or {}).get("not_verified") or {}).items():
        lines.append(f"not verified on {cls}: {why}")
    return lines


VERIFIED_HEADERS = ["artifact", "runtime", "CPU class", "mode", "CPU", "samples", "cosine", "top-1 agr.", "metric"]


def verified_rows(manifest: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The declared classes, then one row per verification record and one per class left
    unverified (with why): what report.md and report.html both show."""
    deploy = manifest.get("deploy") or {}
    note = (f"Declared CPU classes (deploy.cpus): {', '.join(deploy.get('cpus') or []) or '–'}; "
            f"built on {deploy.get('built_on', cpu_class(manifest))}.")
    rows = []
    for a in manifest["artifacts"]:
        for v in a.get("verified_on") or []:
            metric = (f"{v['metric']} {fmt(v.get('value'))} (ref {fmt(v.get('reference'))}, n={v.get('metric_samples')})"
                      if v.get("metric") else "–")
            rows.append([a["name"], v["runtime"], v["cpu_class"], v["mode"], v.get("cpu_model", "–"),
                         fmt(v.get("parity_samples")), fmt(v.get("cosine_mean")), fmt(v.get("top1_agreement")), metric])
    for cls, why in (deploy.get("not_verified") or {}).items():
        rows.append(["–", "–", cls, "not verified", why, "", "", "", ""])
    return note, rows


def markdown(manifest: dict[str, Any]) -> str:
    rows = summary_rows(manifest)
    cls = cpu_class(manifest)
    lines = [
        f"# {manifest['name']}",
        "",
        f"edgekit {manifest['edgekit_version']} · recipe sha256 `{manifest['recipe_sha256'][:12]}` · "
        f"source `{manifest['source_model']['ref']}` ({manifest['source_model']['kind']})",
        "",
        f"Latencies measured on {cls} ({manifest['environment']['cpu'].get('model', '?')}).",
        "",
        f"| artifact | runtime | precision | size MB | metric | value | drop | cosine | p50 ms ({cls}) | p90 ms ({cls}) |",
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
    if manifest.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in manifest["warnings"]]
    note, known = verified_rows(manifest)
    lines += ["", "## Where it is known good", "", note, "", "| " + " | ".join(VERIFIED_HEADERS) + " |",
              "|" + "---|" * len(VERIFIED_HEADERS)] + ["| " + " | ".join(r) + " |" for r in known]
    from edgekit.models.onnx_source import report_lines

    lines += report_lines(manifest)
    lines += ["", "## Stages", ""]
    for s in manifest["stages"]:
        lines.append(f"- `{s['kind']}` ({s['seconds']:.2f} s) → {', '.join(s['outputs']) or '–'}")
    lines += [f"- **warning**: {w}" for w in stage_warnings(manifest)]
    lines += sensitivity_lines(manifest)
    from edgekit.prune.report import pruning_lines

    lines += pruning_lines(manifest)
    env = manifest["environment"]
    lines += ["", "## Environment", "",
              f"- CPU: {env['cpu']['model']} ({env['cpu']['logical_cores']} logical cores, class {cls})",
              f"- Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
              f"- profile threads: {manifest['recipe']['profile']['threads']}", ""]
    return "\n".join(lines)


def stage_warnings(manifest: dict[str, Any]) -> list[str]:
    """What stages recorded as possibly wrong, one line each (the compress summary prints them)."""
    out = []
    for i, s in enumerate(manifest.get("stages", [])):
        tw = (s.get("measured") or {}).get("tracer_warnings") or []
        if tw:
            out.append(f"stages[{i}] ({s['kind']}): {len(tw)} TracerWarning(s): the exported graph may be wrong for "
                       f"inputs unlike the example; first: {tw[0]}")
        measured = s.get("measured") or {}
        if isinstance(measured.get("not_built"), str):
            out.append(f"stages[{i}] ({s['kind']}): {measured['not_built']}")
        lint = [p for p in measured.get("lint") or [] if isinstance(p, dict)]
        if lint:
            out.append(f"stages[{i}] ({s['kind']}): {len(lint)} lint finding(s); first: {lint[0].get('why')} "
                       f"(node {lint[0].get('node')!r})")
    return out


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
            db = "∞ (lossless)" if r.get("lossless") else fmt(r["sqnr_db"], 1)
            lines.append(f"| `{r['node']}` | {db} | {fmt(r.get('metric'))} |")
        aa = s["measured"].get("accuracy_aware")
        if aa:
            lines += ["", f"Accuracy-aware: {len(aa['trials'])} trials, final {aa['metric']} {fmt(aa['final_metric'])} "
                          f"(drop {fmt(aa['final_drop'])}, budget {aa['max_drop']}); float nodes: "
                          + (", ".join(f"`{n}`" for n in aa["trials"][-1]["float_nodes"]) or "none")]
    return lines
