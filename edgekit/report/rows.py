"""A manifest turned, once, into the rows every view of a run shows: the `compress` summary
table, report.md and report.html. Each view renders these rows and computes nothing of its own,
so the three can never disagree about a number or a verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.report.pruning import PruningTable, pruning_tables
from edgekit.runtimes import pytorch

VERIFIED_HEADERS = ["artifact", "runtime", "CPU class", "mode", "CPU", "samples", "cosine", "top-1 agr.", "metric"]


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_headers(cls: str) -> list[str]:
    return ["artifact", "runtime", "precision", "size MB", "metric", "value", "drop", "cosine",
            f"p50 ms ({cls})", f"p90 ms ({cls})"]


def summary_cells(r: dict[str, Any]) -> list[str]:
    """One summary row as the cells every view prints, in `summary_headers` order."""
    return [r["artifact"], r["runtime"], fmt(r["precision"]), fmt(r["size_mb"], 3), fmt(r["metric"]), fmt(r["value"]),
            fmt(r["drop"]), fmt(r["cosine"]), fmt(r["p50_ms"], 3), fmt(r["p90_ms"], 3)]


def summary_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (artifact, runtime) plus the reference."""
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
    from edgekit.runtimes.cpu_classes import describe

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


def verified_rows(manifest: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The declared classes, then one row per verification record and one per class left
    unverified (with why)."""
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


def stage_warnings(manifest: dict[str, Any]) -> list[str]:
    """What stages recorded as possibly wrong, one line each."""
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


LATENCY_HEADERS = ["measurement", "n", "p90 bound ms", "p99 ms", "peak RSS MB", "energy provenance",
                   "net mJ/inference"]


def latency_rows(manifest: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, m in (manifest.get("profile") or {}).items():
        e = m.get("energy", {})
        net = e.get("net_j_per_inference")
        why = f": {e['reason']}" if e.get("reason") and e.get("provenance") == "unavailable" else ""
        rows.append([key, str(m["n"]), fmt(m.get("p90_upper_bound_ms"), 3), fmt(m.get("p99_ms"), 3),
                     fmt(m.get("peak_rss_mb"), 1), f"{e.get('provenance', '–')}{why}",
                     fmt(None if net is None else net * 1000)])
    return rows


GENERATION_HEADERS = ["artifact", "runtime", "size MB", "perplexity", "increase", "KL / token", "top-1 agr.",
                      "identical continuations", "TTFT p90 ms", "prefill tok/s", "decode ms/token (p90 bound)",
                      "decode tok/s", "peak RSS MB"]


def generation_rows(manifest: dict[str, Any]) -> list[list[str]]:
    """A language model's table: its measures of quality next to its generation speed, per
    artifact and runtime (the reference first). TTFT and prefill are for the first prompt length."""
    gen = manifest.get("generation") or {}
    metrics = manifest["metrics"]
    if not gen and metrics.get("reference", {}).get("metric") != "perplexity":
        return []
    sizes = {a["name"]: a["bytes"] / 1e6 for a in manifest.get("artifacts", [])}
    rows = []
    keys = [("reference", metrics["reference"].get("runtime", pytorch.NAME))]
    keys += [(n, rt) for n, per in metrics.items() if n != "reference" for rt in per]
    for name, rt in keys:
        m = metrics["reference"] if name == "reference" else metrics[name][rt]
        g = gen.get(f"{name}/{rt}") or {}
        first = next(iter((g.get("prompts") or {}).values()), {})
        ttft = (first.get("ttft_ms") or {}).get("p90_ms")
        d = g.get("decode_ms_per_token") or {}
        cont = m.get("continuations")
        det = g.get("details") or {}  # the precisions the runtime chose, where it chooses (OpenVINO)
        ran = f"{rt} ({det['inference_precision']}, KV {det.get('kv_cache_precision', '?')})" \
            if det.get("inference_precision") else rt
        rows.append([name, ran, fmt(sizes.get(name), 1), fmt(m.get("value"), 3),
                     "–" if name == "reference" else f"{m.get('drop', 0):+.1%}",
                     fmt(m.get("kl_mean")), fmt(m.get("top1_agreement")),
                     f"{cont['identical']}/{cont['prompts']}" if cont else "–", fmt(ttft, 1),
                     fmt(first.get("prefill_tokens_per_s"), 0),
                     f"{fmt(d.get('median_ms'), 2)} ({fmt(d.get('p90_upper_bound_ms'), 2)})" if d else "–",
                     fmt(g.get("decode_tokens_per_s"), 1), fmt(g.get("peak_rss_mb"), 0)])
    return rows


def generation_points(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per artifact x runtime with a generation profile: perplexity against decode time per
    token (the language model's accuracy-vs-latency), and its prefill and decode speeds."""
    gen, metrics, out = manifest.get("generation") or {}, manifest["metrics"], []
    for key, g in gen.items():
        name, rt = key.split("/", 1)
        m = metrics.get("reference", {}) if name == "reference" else (metrics.get(name) or {}).get(rt, {})
        d = g.get("decode_ms_per_token") or {}
        first = next(iter((g.get("prompts") or {}).values()), {})
        if m.get("value") is not None and d.get("median_ms"):
            out.append({"label": key, "latency_ms": d["median_ms"], "value": m["value"],
                        "decode_tokens_per_s": g.get("decode_tokens_per_s"),
                        "prefill_tokens_per_s": first.get("prefill_tokens_per_s")})
    return out


@dataclass
class SensitivityTable:
    """The most sensitive nodes a quantize stage scanned (the full list is sensitivity.json)."""

    kind: str
    samples: int
    nodes: int
    rows: list[list[str]]  # node, SQNR dB, metric with only this node quantized
    accuracy_aware: str = ""  # the search's outcome, one sentence


def sensitivity_tables(manifest: dict[str, Any], top: int = 10) -> list[SensitivityTable]:
    tables = []
    for s in manifest["stages"]:
        sens = s.get("measured", {}).get("sensitivity")
        if not sens:
            continue
        rows = [[r["node"], "∞ (lossless)" if r.get("lossless") else fmt(r["sqnr_db"], 1), fmt(r.get("metric"))]
                for r in sens["nodes"][:top]]
        aa = s["measured"].get("accuracy_aware")
        line = ""
        if aa:
            line = (f"Accuracy-aware: {len(aa['trials'])} trials, final {aa['metric']} {fmt(aa['final_metric'])} "
                    f"(drop {fmt(aa['final_drop'])}, budget {aa['max_drop']}); float nodes: "
                    + (", ".join(f"`{n}`" for n in aa["trials"][-1]["float_nodes"]) or "none"))
        tables.append(SensitivityTable(s["kind"], sens["samples"], len(sens["nodes"]), rows, line))
    return tables


@dataclass
class Normalization:
    """What was done to an ONNX source before the stages (nothing for torch sources)."""

    before: str
    after: str
    steps: list[str]
    not_done: list[str]


def normalization(manifest: dict[str, Any]) -> Normalization | None:
    norm = manifest.get("source_model", {}).get("normalization")
    if not norm:
        return None
    a, b = norm["from"], norm["to"]
    steps = [f"`{s['step']}`: {s['did']} (parity vs the source on onnxruntime: max rel error "
             f"{s['parity']['max_rel_err']:.1e}, worst cosine {s['parity']['cosine_min']:.6f}, "
             f"{s['parity']['samples']} samples)" for s in norm["steps"]]
    return Normalization(f"opset {a['opset']} / IR {a['ir']}", f"opset {b['opset']} / IR {b['ir']}", steps,
                         list(norm["notes"]))


@dataclass
class ReportRows:
    """Everything a report shows, computed from the manifest in one pass."""

    name: str
    header: str  # edgekit version, recipe hash, source
    created: str
    cpu_class: str
    cpu_model: str
    summary: list[dict[str, Any]]
    skipped: list[str]
    warnings: list[str]
    verified_note: str
    verified: list[list[str]]
    stages: list[list[str]]  # kind, seconds, outputs
    stage_warnings: list[str]
    sensitivity: list[SensitivityTable]
    pruning: list[PruningTable]
    normalization: Normalization | None
    latency: list[list[str]]  # LATENCY_HEADERS, from the manifest's profile summary
    generation: list[list[str]]  # GENERATION_HEADERS: a language model's quality and speed
    generation_points: list[dict[str, Any]]  # for the perplexity-vs-decode plot and the speed bars
    environment: list[list[str]]  # component, version
    threads: Any
    sizes_mb: dict[str, float] = field(default_factory=dict)
    sparsity: list[tuple[str, dict[str, float]]] = field(default_factory=list)


def report_rows(manifest: dict[str, Any]) -> ReportRows:
    cls = cpu_class(manifest)
    env = manifest["environment"]
    src = manifest["source_model"]
    note, verified = verified_rows(manifest)
    return ReportRows(
        name=manifest["name"],
        header=(f"edgekit {manifest['edgekit_version']} · recipe sha256 `{manifest['recipe_sha256'][:12]}` · "
                f"source `{src['ref']}` ({src['kind']})"),
        created=str(manifest.get("created", "")),
        cpu_class=cls,
        cpu_model=env["cpu"].get("model", "?"),
        summary=summary_rows(manifest),
        skipped=[f"{s['artifact']} on {s['runtime']}: {s['reason']}" for s in manifest.get("skipped", [])],
        warnings=list(manifest.get("warnings") or []),
        verified_note=note,
        verified=verified,
        stages=[[s["kind"], f"{float(s['seconds']):.2f}", ", ".join(s["outputs"]) or "–"] for s in manifest["stages"]],
        latency=latency_rows(manifest),
        generation=generation_rows(manifest),
        generation_points=generation_points(manifest),
        stage_warnings=stage_warnings(manifest),
        sensitivity=sensitivity_tables(manifest),
        pruning=pruning_tables(manifest),
        normalization=normalization(manifest),
        environment=[["CPU", f"{env['cpu']['model']} ({env['cpu']['logical_cores']} logical cores, class {cls})"],
                     ["Python", env["python"]]] + [[k, v] for k, v in env["versions"].items() if v],
        threads=manifest["recipe"]["profile"]["threads"],
        sizes_mb={a["name"]: a["bytes"] / 1e6 for a in manifest.get("artifacts", [])},
        sparsity=[(s["kind"], {k: float(v) for k, v in s["measured"]["sparsity"].items()})
                  for s in manifest.get("stages", [])
                  if isinstance(s.get("measured", {}).get("sparsity"), dict) and s["measured"]["sparsity"]],
    )
