"""Old ONNX files through `quantize.int8`: the nine classic architectures that the onnx package
ships as backend test models (`onnx/backend/test/data/light/`: ResNet-50, DenseNet-121,
Inception v1/v2, ShuffleNet, SqueezeNet, VGG-19, AlexNet, ZFNet-512; opset 9, IR 3, every
initializer also a graph input), made realistic offline:

- each ConstantOfShape weight (computed from a `*__SHAPE` initializer) becomes a seeded random
  initializer, still listed as a graph input as IR 3 exporters wrote them: He-normal conv and
  fully-connected weights, small biases, BatchNormalization scale/shift around 1/0 and its
  running mean/variance set to the statistics its input actually has on two images (as
  training would leave them), the affine Mul/Add after DenseNet's and Inception v2's
  BatchNormalization around 1/0;
- the final Softmax is dropped, so the cosine compares logits (a saturated or flat softmax hides
  differences);
- inputs are smooth random images (a 7x7 grid upsampled to 224x224, plus noise, standardised).

Each model then goes through `model: {onnx: ...}` and a plain `{kind: quantize.int8}` on
edgekit's one execution path (`edgekit.pipeline.run`), targets ONNX Runtime and OpenVINO, with the
verify floor lowered so every number is reported (the table says which would miss the default
cosine_min 0.99). A second stage quantizes Conv/Gemm only (`op_types: [Conv, Gemm]`), to tell
what the other quantized ops (Concat, pooling, Add...) cost. Each model runs in its own process:
if a runtime crashes (OpenVINO 2026.4 segfaulted compiling some INT8 graphs) the row says so
and is rerun without that runtime.

    .venv/bin/python -m benchmarks.old_onnx [--only resnet50,vgg19] [--calibration 16] [--evaluation 16]

prints a table and writes benchmarks/results/<cpu-class>/old_onnx.json (benchmarks/_results.py); with
--only, the other models' rows are kept from this CPU class's last run."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a file (benchmarks/NAME.py) too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import previous, save, table  # noqa: E402
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ["resnet50", "densenet121", "inception_v1", "inception_v2", "shufflenet", "squeezenet", "vgg19",
          "bvlc_alexnet", "zfnet512"]
DEFAULT_COSINE_MIN = 0.99


def _consumers(graph: Any) -> dict[str, list[tuple[Any, int]]]:
    out: dict[str, list[tuple[Any, int]]] = {}
    for n in graph.node:
        for k, t in enumerate(n.input):
            out.setdefault(t, []).append((n, k))
    return out


def _random_weight(name: str, shape: tuple[int, ...], uses: dict[str, list[tuple[Any, int]]],
                   rng: np.random.Generator) -> np.ndarray:
    """A value fit for where the tensor is used (first consumer decides; Unsqueeze looks through)."""
    node, k = uses[name][0]
    if node.op_type == "Unsqueeze":
        node, k = uses[node.output[0]][0]
    op = node.op_type
    if op == "Conv" and k == 1:
        return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    if op == "Gemm" and k == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return rng.normal(0, np.sqrt(2.0 / shape[1 if trans_b else 0]), shape)
    if op == "BatchNormalization":
        return {1: rng.uniform(0.8, 1.2, shape), 2: rng.normal(0, 0.1, shape), 3: np.zeros(shape),
                4: np.ones(shape)}[k]
    if op == "Mul":
        return rng.uniform(0.8, 1.2, shape)
    return rng.normal(0, 0.05, shape)  # biases, Add shifts


def images(n: int, seed: int, size: int = 224) -> np.ndarray:
    """Smooth image-like inputs, standardised per channel: a 7x7 grid upsampled, plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 3, 7, 7))
    x = coarse.repeat(size // 7, axis=2).repeat(size // 7, axis=3) + rng.normal(0, 0.05, (n, 3, size, size))
    x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    return x.astype(np.float32)


def _set_bn_statistics(model: Any, x: np.ndarray) -> None:
    """Running mean/var of every BatchNormalization := the per-channel statistics its input has,
    as training leaves them. One run of a probe graph in which each BatchNormalization normalises
    with the statistics of the image itself (training-mode, ReduceMean over N, H, W), exposing
    them; averaged over the images of `x` (batch 1 each)."""
    import onnxruntime as ort

    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        return
    inits = {i.name: i for i in model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    g = probe.graph
    nodes, stats = [], []
    for n in g.node:
        if n.op_type != "BatchNormalization":
            nodes.append(n)
            continue
        x_, gamma, beta = n.input[0], n.input[1], n.input[2]
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        c = inits[gamma].dims[0]
        t = f"{n.output[0]}__probe"
        for name, src in ((f"{t}_g", gamma), (f"{t}_b", beta)):
            g.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(inits[src]).reshape(c, 1, 1).astype(np.float32), name))
        g.initializer.append(numpy_helper.from_array(np.array(eps, np.float32), f"{t}_eps"))
        nodes += [
            helper.make_node("ReduceMean", [x_], [f"{t}_m"], axes=[0, 2, 3]),
            helper.make_node("Sub", [x_, f"{t}_m"], [f"{t}_d"]),
            helper.make_node("Mul", [f"{t}_d", f"{t}_d"], [f"{t}_d2"]),
            helper.make_node("ReduceMean", [f"{t}_d2"], [f"{t}_v"], axes=[0, 2, 3]),
            helper.make_node("Add", [f"{t}_v", f"{t}_eps"], [f"{t}_ve"]),
            helper.make_node("Sqrt", [f"{t}_ve"], [f"{t}_s"]),
            helper.make_node("Div", [f"{t}_d", f"{t}_s"], [f"{t}_n"]),
            helper.make_node("Mul", [f"{t}_n", f"{t}_g"], [f"{t}_ng"]),
            helper.make_node("Add", [f"{t}_ng", f"{t}_b"], [n.output[0]]),
        ]
        stats.append((n, f"{t}_m", f"{t}_v"))
    del g.node[:]
    g.node.extend(nodes)
    g.output.extend(onnx.ValueInfoProto(name=name) for _, m, v in stats for name in (m, v))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    wanted = [name for _, m, v in stats for name in (m, v)]
    runs = [dict(zip(wanted, sess.run(wanted, {feed: x[i : i + 1]}))) for i in range(len(x))]  # batch 1
    for n, m, v in stats:
        means = np.stack([r[m].ravel() for r in runs]).astype(np.float64)
        second = np.stack([r[v].ravel() for r in runs]) + means**2
        mean = means.mean(axis=0)
        var = second.mean(axis=0) - mean**2
        for idx, val in ((3, mean), (4, var)):
            inits[n.input[idx]].CopyFrom(numpy_helper.from_array(val.astype(np.float32), n.input[idx]))


def realistic(name: str, seed: int = 0) -> onnx.ModelProto:
    """The onnx test model `name` with random weights in place of its ConstantOfShape fills, kept
    at opset 9 / IR 3 with every initializer listed as a graph input, final Softmax removed."""
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    g = model.graph
    rng = np.random.default_rng(seed)
    uses = _consumers(g)
    shapes = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.name.endswith("__SHAPE")}
    nodes, new = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[n.input[0]])
            new.append(numpy_helper.from_array(_random_weight(n.output[0], shape, uses, rng).astype(np.float32),
                                               n.output[0]))
        else:
            nodes.append(n)
    if nodes[-1].op_type == "Softmax" and nodes[-1].output[0] == g.output[0].name:
        logits = nodes.pop().input[0]
        g.output[0].name = logits
        g.output[0].type.tensor_type.ClearField("shape")
    kept = [i for i in g.initializer if i.name not in shapes]
    del g.initializer[:]
    g.initializer.extend(kept + new)
    inputs = [i for i in g.input if i.name not in shapes]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in new]
    del g.input[:]
    g.input.extend(inputs)
    del g.node[:]
    g.node.extend(nodes)
    _set_bn_statistics(model, images(2, seed + 100))
    return model


def _run(data: dict[str, Any], out: Path) -> Any:
    from edgekit.pipeline import run
    from edgekit.recipe import LoadedRecipe, parse_recipe

    def progress(label: str, total: int) -> Any:  # the parent names what a crashed child was doing
        print(f"@@ {label}", file=sys.stderr, flush=True)
        return lambda n: None

    recipe = parse_recipe(data, data["name"])
    loaded = LoadedRecipe(recipe=recipe, path=(out / f"{data['name']}.yaml").resolve(), base_dir=out,
                          sha256="-", text=json.dumps(data))
    return run(loaded, out / "out", force=True, progress=progress)


def one(name: str, work: Path, n_cal: int, n_eval: int, targets: list[str], conv_gemm_only: bool = False) -> dict[str, Any]:
    model = realistic(name)
    real = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    feed = real[0].name
    src = work / f"{name}.onnx"
    onnx.save(model, str(src))
    row: dict[str, Any] = {"model": name, "source": {"opset": model.opset_import[0].version, "ir": model.ir_version,
                                                      "graph_inputs": len(model.graph.input), "real_inputs": [feed],
                                                      "mb": round(src.stat().st_size / 1e6, 1)}}
    del model
    np.savez(work / "cal.npz", **{feed: images(n_cal, 1)})
    np.savez(work / "eval.npz", **{feed: images(n_eval, 2)})
    data = {
        "edgekit": 1, "name": f"old-{name}", "model": {"onnx": src.name},
        "data": {"calibration": {"npz": "cal.npz"}, "evaluation": {"npz": "eval.npz"}},
        # Conv/Gemm only first (verified first: if a runtime crashes on the default graph, this row
        # is already measured), then the plain default the issue asks about
        "stages": [{"kind": "quantize.int8", "name": "int8_conv_gemm", "op_types": ["Conv", "Gemm"]},
                   {"kind": "quantize.int8"}][: 1 if conv_gemm_only else 2],
        "targets": targets,
        # native verification only: QEMU runs of these 224-px graphs take minutes per artifact (docs/cpu-classes.md
        # and benchmarks/cpu_classes.py measure the emulated classes)
        "verify": {"cosine_min": 0.01, "samples": n_eval, "emulate": False},
        "profile": {"enabled": False},
    }
    t0 = time.perf_counter()
    try:
        res = _run(data, work)
    except Exception as exc:  # a benchmark reports every model, failures included
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        return row
    m = res.manifest
    norm = m["source_model"]["normalization"]
    row.update(ok=True, seconds=round(time.perf_counter() - t0, 1), normalization=norm,
               stages={r["outputs"][0]: r["measured"] for r in m["stages"]},
               metrics={a: v for a, v in m["metrics"].items() if a != "reference"},
               mb={a["name"]: round(a["bytes"] / 1e6, 1) for a in m["artifacts"]})
    return row


def _fmt(row: dict[str, Any]) -> list[str]:
    s = row["source"]
    if not row.get("ok"):
        return [row["model"], f"{s['opset']} / {s['ir']}", "–", "–", f"**{row['error']}**", "", "", "", "", ""]
    n = row["normalization"]
    did = "; ".join(st["did"].split(" (needed")[0] for st in n["steps"]) + ("; " + "; ".join(n["notes"]) if n["notes"] else "")
    par = min((st["parity"]["cosine_min"] for st in n["steps"]), default=1.0)
    err = max((st["parity"]["max_rel_err"] for st in n["steps"]), default=0.0)
    mt = row["metrics"]

    def cos(a: str, rt: str) -> str:
        if rt not in mt[a]:
            crash = row.get("openvino_crash", "")
            if crash and f"compiling {a}.onnx" in crash:
                return f"**crashed: {crash}**"
            return "not measured (rerun without OpenVINO)" if crash else "–"
        p = mt[a][rt]["parity"]
        mark = "" if p["cosine_mean"] >= DEFAULT_COSINE_MIN else " (below 0.99)"
        agree = f", top-1 {p['top1_agreement']:.2f}" if "top1_agreement" in p else ""
        return f"{p['cosine_mean']:.4f}{agree}{mark}"

    return [row["model"], f"{s['opset']} / {s['ir']} ({s['graph_inputs']} inputs)", f"{n['to']['opset']} / {n['to']['ir']}",
            did, f"cos {par:.6f}, rel err {err:.1e}", cos("fp32", "openvino"), cos("int8", "onnxruntime"),
            cos("int8", "openvino"), cos("int8_conv_gemm", "onnxruntime"), cos("int8_conv_gemm", "openvino")]


def child(name: str, n_cal: int, n_eval: int, targets: list[str], conv_gemm_only: bool = False,
          retry: bool = True) -> dict[str, Any]:
    """One model in a fresh process: a runtime that crashes (OpenVINO segfaulted compiling one of
    these graphs) takes only its own row down; it is rerun without that runtime, then on OpenVINO
    alone with the Conv/Gemm-only stage, so the rest of the row is still measured."""
    with tempfile.TemporaryDirectory(prefix=f"old_onnx_{name}_") as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-X", "faulthandler", "-m", "benchmarks.old_onnx", "--child", name, "--row", str(out),
               "--targets", ",".join(targets), "--calibration", str(n_cal), "--evaluation", str(n_eval)]
        cmd += ["--conv-gemm-only"] if conv_gemm_only else []
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
        if proc.returncode == 0:
            return json.loads(out.read_text())
    labels = [ln[3:] for ln in proc.stderr.splitlines() if ln.startswith("@@ ")]
    doing = labels[-1] if labels else "starting"
    if "compile_model" in proc.stderr:
        art = doing.split()[1] if doing.startswith("verifying ") else "?"
        doing = f"compiling {art}.onnx (compile_model)"
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "@@"))]
    crash = f"exit {proc.returncode} while {doing}" + (f": {tail[-1].strip()}" if proc.returncode > 0 and tail else "")
    if proc.returncode < 0 and "openvino" in targets and retry:
        row = child(name, n_cal, n_eval, [t for t in targets if t != "openvino"], retry=False)
        row["openvino_crash"] = f"signal {-proc.returncode} ({signal.Signals(-proc.returncode).name}) while {doing}"
        ov = child(name, n_cal, n_eval, ["openvino"], conv_gemm_only=True, retry=False)
        for a, per_rt in (ov.get("metrics") or {}).items():
            if row.get("ok") and a in row["metrics"]:
                row["metrics"][a].update(per_rt)
        return row
    return {"model": name, "ok": False, "error": crash, "source": {"opset": 9, "ir": 3, "graph_inputs": "?"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--calibration", type=int, default=16)
    ap.add_argument("--evaluation", type=int, default=16)
    ap.add_argument("--targets", default="onnxruntime,openvino")
    ap.add_argument("--table", action="store_true", help="print the table of this CPU class's last results and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--conv-gemm-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args()
    targets = args.targets.split(",")
    if args.child:
        with tempfile.TemporaryDirectory(prefix=f"old_onnx_{args.child}_") as tmp:
            row = one(args.child, Path(tmp), args.calibration, args.evaluation, targets, args.conv_gemm_only)
        Path(args.row).write_text(json.dumps(row, default=str))
        return
    last = previous("old_onnx")
    if args.table:
        if last is None:
            raise SystemExit("no old_onnx result for this CPU class yet")
        print_table(last["rows"])
        return
    names = [n for n in args.only.split(",") if n] or MODELS
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"--only: unknown model {unknown[0]!r}; allowed: {', '.join(MODELS)}")
    from edgekit.artifact.environment import fingerprint

    rows = []
    for name in names:
        rows.append(child(name, args.calibration, args.evaluation, targets))
        print(json.dumps({k: rows[-1].get(k) for k in ("model", "ok", "seconds", "error", "openvino_crash")}), flush=True)
    kept = ""
    if set(names) != set(MODELS) and last is not None:  # --only: update those rows of the last run
        done = {r["model"]: r for r in last["rows"]}
        done.update({r["model"]: r for r in rows})
        rows = [done[n] for n in MODELS if n in done]
        if set(done) - set(names):
            kept = f" Rows of {', '.join(n for n in MODELS if n in done and n not in names)} kept from an earlier run."
    shown = print_table(rows)
    save("old_onnx", [table(
        f"old ONNX files (opset 9 / IR 3) through quantize.int8: {args.calibration} calibration / "
        f"{args.evaluation} evaluation images, cosine vs the fp32 logits", HEADERS, shown,
        "random weights made realistic (BatchNormalization statistics from real activations), final Softmax "
        f"dropped; (below 0.99) marks a miss of the default cosine_min. Targets: {', '.join(targets)}.{kept}")],
        {"environment": fingerprint(), "calibration_samples": args.calibration,
         "evaluation_samples": args.evaluation, "targets": targets, "rows": rows})


HEADERS = ["model", "source opset / IR", "normalised opset / IR", "normalisation",
           "parity of normalised fp32 (worst step)", "fp32 on OpenVINO vs source",
           "INT8 on ONNX Runtime (cosine vs fp32)", "INT8 on OpenVINO", "INT8 Conv/Gemm only, ONNX Runtime",
           "INT8 Conv/Gemm only, OpenVINO"]


def print_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    shown = [_fmt(row) for row in rows]
    print("\n| " + " | ".join(HEADERS) + " |")
    print("|" + "---|" * len(HEADERS))
    for cells in shown:
        print("| " + " | ".join(cells) + " |")
    return shown


if __name__ == "__main__":
    main()
