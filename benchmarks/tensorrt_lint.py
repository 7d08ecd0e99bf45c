"""The TensorRT lint on edgekit's INT8 QDQ exports of the zoo models, and on one broken copy.

For the digits CNN, the digits ViT and all-MiniLM-L6-v2 (real weights), `edgekit.pipeline.run`
exports the float model, quantizes it the way TensorRT's parser accepts (`quantize.int8` with
signed, symmetric int8 activations; the model's preset) and runs `target.tensorrt` (INT8 from
that QDQ artifact, `lint: warn` so every finding is recorded). Without a GPU no engine is built;
the lint is what this measures. Then one copy of the digits CNN QDQ graph gets a non-zero int8
zero point and the lint must name that node.

    .venv/bin/python -m benchmarks.tensorrt_lint [--only digits_cnn,digits_vit,minilm]

prints a table and writes benchmarks/results/<cpu-class>/tensorrt_lint.json (benchmarks/_results.py)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgekit.runtimes.cpu_classes import local_class
from edgekit.pipeline import run
from edgekit.recipe import LoadedRecipe, parse_recipe
from edgekit.runtimes.tensorrt.lint import errors, lint

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import save, table  # noqa: E402

MODELS = {
    "digits_cnn": ({"builtin": "digits", "samples": 128}, {"builtin": "digits", "samples": 64}, "cnn"),
    "digits_vit": ({"builtin": "digits", "samples": 128}, {"builtin": "digits", "samples": 64}, "transformer"),
    "minilm": ({"builtin": "sentences", "split": "train", "samples": 32},
               {"builtin": "sentences", "split": "test", "samples": 16}, "transformer"),
}


def recipe(model: str) -> dict[str, Any]:
    calib, evaluation, preset = MODELS[model]
    return {"edgekit": 1, "name": f"trt-lint-{model.replace('_', '-')}",
            "model": {"python": f"edgekit.models.zoo:{model}"},
            "data": {"calibration": calib, "evaluation": evaluation},
            "stages": [{"kind": "export.onnx", "opset": 17},
                       {"kind": "quantize.int8", "preset": preset, "activations": {"dtype": "int8", "symmetric": True}},
                       {"kind": "target.tensorrt", "precision": "int8", "lint": "warn"}],
            "targets": ["onnxruntime", "tensorrt"],
            "verify": {"cosine_min": 0.5, "samples": 16, "emulate": False}, "profile": {"enabled": False}}


def measure(model: str, tmp: Path) -> dict[str, Any]:
    data = recipe(model)
    text = yaml.safe_dump(data)
    loaded = LoadedRecipe(recipe=parse_recipe(data, model), path=tmp / f"{model}.yaml", base_dir=tmp,
                          sha256="", text=text)
    res = run(loaded, tmp / "out", force=True)
    rec = next(s for s in res.manifest["stages"] if s["kind"] == "target.tensorrt")["measured"]
    qdq = res.out_dir / next(a["path"] for a in res.manifest["artifacts"] if a["name"] == "int8")
    import onnx

    nodes = onnx.load(str(qdq), load_external_data=False).graph.node
    return {"model": model, "qdq_nodes": len(nodes),
            "q_dq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes),
            "lint_errors": rec["lint_errors"], "lint_warnings": rec["lint_warnings"],
            "warnings": sorted({p["why"].split(":")[0] for p in rec["lint"] if p["severity"] == "warning"}),
            "built": rec.get("built"), "not_built": rec.get("not_built"), "qdq_path": str(qdq)}


def broken(qdq: Path, tmp: Path) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(qdq))
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2)
    zp = next(t for t in m.graph.initializer if t.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zp).shape, 5, np.int8), zp.name))
    out = tmp / "broken.onnx"
    onnx.save(m, str(out))
    found = errors(lint(out))
    return {"changed_zero_point_of": q.name, "errors": [p.line() for p in found],
            "named": sorted({p.node for p in found})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(MODELS))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-trt-lint-") as t:
        tmp = Path(t)
        for model in args.only.split(","):
            rows.append(measure(model, tmp / model))
        first = next(r for r in rows if r["model"] == "digits_cnn") if any(r["model"] == "digits_cnn" for r in rows) else rows[0]
        broke = broken(Path(first["qdq_path"]), tmp)
    cls = local_class()
    title = f"TensorRT lint on edgekit INT8 QDQ exports (int8 symmetric activations); host class {cls}"
    print(title)
    print(f"{'model':11} {'nodes':>6} {'Q/DQ':>5} {'errors':>6} {'warnings':>8}  warning kinds")
    shown = []
    for r in rows:
        print(f"{r['model']:11} {r['qdq_nodes']:>6} {r['q_dq_nodes']:>5} {r['lint_errors']:>6} {r['lint_warnings']:>8}  "
              f"{'; '.join(r['warnings']) or '-'}")
        shown.append([r["model"], str(r["qdq_nodes"]), str(r["q_dq_nodes"]), str(r["lint_errors"]),
                      str(r["lint_warnings"]), "; ".join(r["warnings"]) or "-"])
    broke_title = (f"broken copy ({first['model']}, zero point of {broke['changed_zero_point_of']} set to 5): "
                   f"{len(broke['errors'])} error(s) naming {', '.join(broke['named'])}")
    print(broke_title)
    for line in broke["errors"]:
        print("  " + line)
    samples = ", ".join(f"{m} {MODELS[m][0]['samples']} / {MODELS[m][1]['samples']}" for m in args.only.split(","))
    tables = [table(title, ["model", "nodes", "Q/DQ", "errors", "warnings", "warning kinds"], shown,
                    f"calibration / evaluation samples: {samples}; "
                    + ("engines built." if all(r.get("built") for r in rows) else
                       f"no engine built here ({str(next(r for r in rows if not r.get('built')).get('not_built'))[:120]}): "
                       "the lint is what is measured.")),
              table(broke_title, ["lint error"], [[line] for line in broke["errors"]])]
    for r in rows:
        r.pop("qdq_path")
    save("tensorrt_lint", tables, {"schema": 1, "cpu_class": cls, "rows": rows, "broken": broke})


if __name__ == "__main__":
    main()
