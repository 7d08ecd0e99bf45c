"""NPU targets, measured: each model through its `recipes/npu_qnn_*.yaml` recipe (export,
target.npu qnn-htp, verification on onnxruntime's CPU kernels and on the HTP emulator of the
onnxruntime-qnn wheel with CPU fallback disabled), plus the library-only route for comparison:
onnxruntime's `qnn_preprocess_model` + `get_qnn_qdq_config` on the same fp32 graph, loaded on
the same emulator.

    .venv/bin/python -m benchmarks.npu [--only digits_cnn,digits_vit,minilm]

Per model: nodes before / after rewriting (and in the QDQ graph), the rewrites applied, the
precision mix, parity and the task metric on each runtime, the emulated time per sample, and
whether the library-only graph loads. Prints tables and writes
benchmarks/results/<cpu-class>/npu.json (benchmarks/_results.py)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

from edgekit.runtimes.cpu_classes import local_class  # noqa: E402
from edgekit.pipeline import run  # noqa: E402
from edgekit.recipe import load_recipe  # noqa: E402

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402

RECIPES = {"digits_cnn": "npu_qnn_digits.yaml", "digits_vit": "npu_qnn_vit.yaml", "minilm": "npu_qnn_minilm.yaml"}


def library_only(fp32: Path, samples: list[dict[str, Any]], work: Path) -> str:
    """onnxruntime's own QNN recipe (pre-process, get_qnn_qdq_config with uint16 activations /
    uint8 weights, quantize) on the fp32 graph, then a load on the HTP emulator: 'loads' or the
    refusal's first line."""
    import onnxruntime.quantization as q
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from edgekit.runtimes import open_runner

    pre = work / "lib.pre.onnx"
    src = pre if qnn_preprocess_model(str(fp32), str(pre)) else fp32

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> Any:
            return next(self.it, None)

    out = work / "lib.qdq.onnx"
    try:
        cfg = get_qnn_qdq_config(str(src), Reader(), activation_type=q.QuantType.QUInt16,
                                 weight_type=q.QuantType.QUInt8)
        q.quantize(str(src), str(out), cfg)
        runner = open_runner("qnn-htp", out, 2)
    except Exception as exc:  # a refusal (ModelLoadError, a quantizer failure) is the measurement here
        return f"refused: {str(exc).splitlines()[0].split(str(out) + ': ', 1)[-1][:160]}"
    runner.close()
    return "loads"


def measure(model: str, work: Path) -> dict[str, Any]:
    loaded = load_recipe(ROOT / "recipes" / RECIPES[model])
    m = run(loaded, work / "out", force=True).manifest
    rec = next(s for s in m["stages"] if s["kind"] == "target.npu")["measured"]
    art = next(a for a in m["artifacts"] if a["produced_by"] == "target.npu")
    row: dict[str, Any] = {
        "model": model, "recipe": f"recipes/{RECIPES[model]}",
        "nodes_before": rec["nodes_before"], "nodes_after_rewrites": rec["nodes_after_rewrites"],
        "nodes_qdq_graph": rec["nodes_quantized_graph"], "rewrites": rec["rewrites_applied"],
        "activations": rec["activations"], "weights": rec["weights"], "precision_mix": rec["precision_mix"],
        "size_mb": round(art["bytes"] / 1e6, 3), "reference": m["metrics"]["reference"],
        "verified_on": art["verified_on"],
    }
    for rt, res in m["metrics"][art["name"]].items():
        prof = (m.get("profile") or {}).get(f"{art['name']}/{rt}") or {}
        row[rt] = {"metric": res.get("metric"), "value": res.get("value"), "drop": res.get("drop"),
                   "cosine": res["parity"]["cosine_mean"], "top1_agreement": res["parity"].get("top1_agreement"),
                   "samples": res["parity"]["samples"], "p50_ms": prof.get("median_ms")}
    fp32 = work / "out" / m["name"] / "models" / "fp32.onnx"
    from edgekit.sources.data import load_data
    from edgekit.sources.model import load_model

    lm = load_model(loaded.recipe.model, loaded.recipe.inputs, loaded.base_dir)
    calib = load_data(loaded.recipe.data.calibration, lm.example, "data.calibration", loaded.base_dir, dict(lm.info))
    row["library_only"] = library_only(fp32, calib.samples[:16], work)
    return row


def print_tables(rows: list[dict[str, Any]], cls: str) -> list[dict[str, Any]]:
    """Prints the tables and returns them for the results file."""
    title = f"target.npu qnn-htp on the HTP emulator (host {cls})"
    headers = ["model", "nodes before → after rewrites → QDQ graph", "rewrites", "act/weight",
               "metric (ref → qnn-htp)", "cosine qnn-htp", "cosine onnxruntime", "ms/sample emulated",
               "library-only route"]
    shown = []
    for r in rows:
        h, o = r.get("qnn-htp", {}), r.get("onnxruntime", {})
        rw = ", ".join(f"{k} {v}" for k, v in r["rewrites"].items()) or "–"
        shown.append([r["model"], f"{r['nodes_before']} → {r['nodes_after_rewrites']} → {r['nodes_qdq_graph']}", rw,
                      f"{r['activations']}/{r['weights']}",
                      f"{h.get('metric')} {r['reference']['value']:.4f} → {h.get('value', float('nan')):.4f}",
                      f"{h.get('cosine', float('nan')):.4f}", f"{o.get('cosine', float('nan')):.4f}",
                      f"{h.get('p50_ms') or float('nan'):.1f}", r["library_only"]])
    print(f"\n## {title}\n")
    print("| " + " | ".join(headers) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in shown:
        print("| " + " | ".join(row) + " |")
    mix_rows = [[r["model"], "; ".join(f"{op} {', '.join(f'{k}×{n}' for k, n in kinds.items())}"
                                       for op, kinds in r["precision_mix"].items())] for r in rows]
    print("\n## precision mix (per op type: nodes reading each quantized input kind)\n")
    for model, mix in mix_rows:
        print(f"- {model}: {mix}")
    samples = ", ".join(f"{r['model']} {r.get('qnn-htp', {}).get('samples', '?')}" for r in rows)
    return [table(title, headers, shown,
                  f"each model through its recipes/npu_qnn_*.yaml recipe, verified on onnxruntime's CPU kernels and on "
                  f"the HTP emulator of the onnxruntime-qnn wheel (CPU fallback off); parity samples: {samples}. "
                  "library-only route = onnxruntime's qnn_preprocess_model + get_qnn_qdq_config on the same fp32 "
                  "graph, loaded on the same emulator."),
            table("precision mix (per op type: nodes reading each quantized input kind)", ["model", "precision mix"],
                  mix_rows)]

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-npu-bench-") as tmp:
        for model in args.only.split(","):
            work = Path(tmp) / model
            work.mkdir()
            rows.append(measure(model, work))
    cls = local_class()
    tables = print_tables(rows, cls)
    save("npu", tables, {"host_cpu_class": cls, "rows": rows})


if __name__ == "__main__":
    main()
