"""The pruning family's section of the reports: parameters and MACs before/after, per-layer
widths and sparsity, as rows (from the manifest's plain dicts; no torch) that report.md and
report.html both render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


@dataclass
class PruningTable:
    kind: str
    totals: list[list[str]]  # label, before, after, ratio
    dropped: list[str] = field(default_factory=list)
    layers: list[list[str]] = field(default_factory=list)  # layer, in, out, sparsity
    more: int = 0  # changed layers left out of `layers`


def pruning_tables(manifest: dict[str, Any], max_layers: int = 40) -> list[PruningTable]:
    tables = []
    for s in manifest.get("stages", []):
        m = s.get("measured", {})
        if not (s["kind"].startswith("prune.") and "before" in m and "after" in m):
            continue
        b, a = m["before"], m["after"]
        t = PruningTable(s["kind"], [[label, _n(b[key]), _n(a[key]), f"{a[key] / max(b[key], 1):.3f}"]
                                     for key, label in (("params", "parameters"), ("nonzero_params", "non-zero parameters"),
                                                        ("macs", "conv/linear MACs"))],
                         dropped=list(m.get("dropped") or []))
        changed = {k: v for k, v in m.get("layers", {}).items()
                   if v["after"] is None or v["after"]["in"] != v["before"]["in"]
                   or v["after"]["out"] != v["before"]["out"] or v["after"]["sparsity"] != v["before"]["sparsity"]}
        for name, v in list(changed.items())[:max_layers]:
            bb, aa = v["before"], v["after"]
            if aa is None:
                t.layers.append([name, f"{bb['in']} → removed", f"{bb['out']} → removed", ""])
            else:
                t.layers.append([name, f"{bb['in']} → {aa['in']}", f"{bb['out']} → {aa['out']}",
                                 f"{bb['sparsity']:.3f} → {aa['sparsity']:.3f}"])
        t.more = max(0, len(changed) - max_layers)
        tables.append(t)
    return tables
