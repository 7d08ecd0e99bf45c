"""report.md lines for pruning stages: parameters and MACs before/after, per-layer widths and
sparsity (plain dicts from the manifest; no torch)."""

from __future__ import annotations

from typing import Any


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def pruning_lines(manifest: dict[str, Any], max_layers: int = 40) -> list[str]:
    lines: list[str] = []
    for s in manifest.get("stages", []):
        m = s.get("measured", {})
        if not (s["kind"].startswith("prune.") and "before" in m and "after" in m):
            continue
        b, a = m["before"], m["after"]
        lines += ["", f"## Pruning (`{s['kind']}`)", "",
                  "| | before | after | after / before |", "|---|---|---|---|"]
        for key, label in (("params", "parameters"), ("nonzero_params", "non-zero parameters"),
                           ("macs", "conv/linear MACs")):
            lines.append(f"| {label} | {_n(b[key])} | {_n(a[key])} | {a[key] / max(b[key], 1):.3f} |")
        if m.get("dropped"):
            lines += ["", "Dropped: " + ", ".join(f"`{d}`" for d in m["dropped"])]
        layers = m.get("layers", {})
        changed = {k: v for k, v in layers.items()
                   if v["after"] is None or v["after"]["in"] != v["before"]["in"]
                   or v["after"]["out"] != v["before"]["out"] or v["after"]["sparsity"] != v["before"]["sparsity"]}
        if changed:
            lines += ["", "| layer | in | out | sparsity |", "|---|---|---|---|"]
            for name, v in list(changed.items())[:max_layers]:
                bb, aa = v["before"], v["after"]
                if aa is None:
                    lines.append(f"| `{name}` | {bb['in']} → removed | {bb['out']} → removed | |")
                    continue
                lines.append(f"| `{name}` | {bb['in']} → {aa['in']} | {bb['out']} → {aa['out']} | "
                             f"{bb['sparsity']:.3f} → {aa['sparsity']:.3f} |")
            if len(changed) > max_layers:
                lines.append(f"| … {len(changed) - max_layers} more layers in manifest.json | | | |")
    return lines
