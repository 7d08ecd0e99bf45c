"""ONNX files as users bring them: old opsets, IR 3 graphs that list every initializer as a graph
input, weights computed by constant subgraphs (ConstantOfShape of a `*__SHAPE` initializer).

`real_inputs` is the one rule for what a caller feeds a graph: its inputs minus the names an
initializer backs (ONNX Runtime sessions apply the same rule through
`edgekit.runtimes.device_side.feed_names`). `normalize` rewrites a source into the float graph the
stages start from (`models/fp32.onnx`), one step at a time, each checked for parity against the
original on ONNX Runtime:

1. `initializer_inputs`: initializers removed from the graph inputs (IR raised to 4, the first IR
   that allows it); onnxruntime's pre-processing otherwise folds such weights away and leaves
   their names as inputs nothing feeds.
2. `opset`: `onnx.version_converter` up to what the recipe's stages need (13 for per-channel
   QuantizeLinear/DequantizeLinear, whose `axis` attribute older opsets reject), IR raised to
   the opset's minimum.
3. `fold`: onnxslim (constant subgraphs folded, Dropout and identities removed).

A step that fails or breaks parity is undone and named in one line under `notes`; the record goes
to `manifest.json` under `source_model.normalization`."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from edgekit.errors import ModelLoadError, first_line

# opset the stage needs of its float input graph: per-channel Q/DQ (axis) needs 13, INT4 Q/DQ 21
PER_CHANNEL_QDQ_OPSET = 13
INT4_QDQ_OPSET = 21
# a step keeps parity when every output's max abs error is within ATOL + RTOL * max|reference|
# and each sample's cosine similarity is at least COSINE_MIN
RTOL, ATOL, COSINE_MIN = 1e-3, 1e-5, 0.9999
PARITY_SAMPLES = 3


def real_inputs(graph: Any) -> list[Any]:
    """The graph inputs a caller feeds: `graph.input` minus initializer-backed names (IR < 4
    graphs list every initializer as an input; IR >= 4 ones may, as overridable defaults)."""
    inits = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def stage_opset(cfg: Any) -> int:
    """The lowest default-domain opset a stage needs of its float ONNX input (0: no need)."""
    kind = getattr(cfg, "kind", "")
    if kind in ("quantize.int8", "quantize.dynamic"):
        return PER_CHANNEL_QDQ_OPSET
    if kind == "quantize.int4" and getattr(cfg, "format", None) == "qdq":
        return INT4_QDQ_OPSET
    return 0


def required_opset(stages: Iterable[Any]) -> tuple[int, str]:
    """The highest opset any stage needs, and which stage needs it ("stages[1] (quantize.int8)")."""
    best, why = 0, ""
    for i, cfg in enumerate(stages):
        need = stage_opset(cfg)
        if need > best:
            best, why = need, f"stages[{i}] ({cfg.kind})"
    return best, why


def opset_of(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def parity_samples(example: dict[str, np.ndarray], datasets: Iterable[Any], n: int = PARITY_SAMPLES,
                   seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A few real samples (calibration / evaluation data) and one seeded standard-normal sample for
    float inputs (the example of an ONNX source is all zeros, which hides most of a graph)."""
    out: list[dict[str, np.ndarray]] = []
    for ds in datasets:
        if ds is not None:
            out += ds.samples[: max(0, n - 1 - len(out))]
    rng = np.random.default_rng(seed)
    out.append({k: (rng.standard_normal(v.shape).astype(v.dtype) if np.issubdtype(v.dtype, np.floating) else v)
                for k, v in example.items()})
    return out


def _session(ort: Any, model: Any, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _outputs(ort: Any, model: Any, samples: list[dict[str, np.ndarray]], threads: int) -> list[list[np.ndarray]]:
    from edgekit.runtimes.device_side import feed_names

    sess = _session(ort, model, threads)
    names = feed_names(sess)
    return [sess.run(None, {k: s[k] for k in names}) for s in samples]


def compare(ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> dict[str, Any]:
    """Worst max abs error (absolute, and relative to the output's largest magnitude) and worst
    per-sample cosine over every output of every sample."""
    worst_abs, worst_rel, worst_cos, ok = 0.0, 0.0, 1.0, True
    for rs, gs in zip(ref, got):
        for r, g in zip(rs, gs):
            r64, g64 = np.asarray(r, np.float64).ravel(), np.asarray(g, np.float64).ravel()
            if r64.shape != g64.shape:
                return {"samples": len(ref), "ok": False, "detail": f"output shape {np.shape(g)} != {np.shape(r)}"}
            err = float(np.max(np.abs(r64 - g64))) if r64.size else 0.0
            scale = float(np.max(np.abs(r64))) if r64.size else 0.0
            denom = float(np.linalg.norm(r64) * np.linalg.norm(g64))
            cos = float(r64 @ g64 / denom) if denom > 0 else (1.0 if err == 0 else 0.0)
            worst_abs, worst_rel, worst_cos = max(worst_abs, err), max(worst_rel, err / max(scale, 1e-30)), min(worst_cos, cos)
            ok = ok and np.isfinite(err) and err <= ATOL + RTOL * scale and cos >= COSINE_MIN
    return {"samples": len(ref), "ok": bool(ok), "max_abs_err": worst_abs, "max_rel_err": worst_rel,
            "cosine_min": worst_cos}


def _drop_initializer_inputs(model: Any) -> Optional[str]:
    inits = {i.name for i in model.graph.initializer}
    listed = [i for i in model.graph.input if i.name in inits]
    if not listed:
        return None
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)
    return f"{len(listed)} initializers removed from the graph inputs"


def _upgrade_opset(model: Any, need: int, why: str) -> tuple[Any, Optional[str]]:
    import onnx

    have = opset_of(model)
    if have >= need:
        return model, None
    converted = onnx.version_converter.convert_version(model, need)
    converted.ir_version = max(converted.ir_version, onnx.helper.find_min_ir_version_for(
        [o for o in converted.opset_import if o.domain in ("", "ai.onnx")]))
    return converted, f"opset {have} -> {need} (needed by {why})"


def _fold(model: Any) -> tuple[Any, Optional[str]]:
    from edgekit.core.backends import require

    onnxslim = require("onnxslim", extra="onnx")
    before = len(model.graph.node)
    folded = onnxslim.slim(copy.deepcopy(model))
    if folded is None:
        raise RuntimeError("onnxslim returned no model")
    if len(folded.graph.node) == before and len(folded.graph.initializer) == len(model.graph.initializer):
        return model, None  # nothing folded: keep the graph as it was
    return folded, f"onnxslim: {before} -> {len(folded.graph.node)} nodes"


def _has_external_data(model: Any) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def normalize(src: Path, dst: Path, need: int, why: str, samples: list[dict[str, np.ndarray]],
              threads: int = 2) -> dict[str, Any]:
    """Write the normalised graph of `src` to `dst` and return the manifest record: from / to
    (opset, IR), each step with what it did and its parity against `src` on ONNX Runtime, and
    `notes`, one line per step that could not be done and why. `dst` is a byte copy of `src`
    when no step changed anything."""
    from edgekit.core.backends import require

    onnx = require("onnx", extra="onnx")
    ort = require("onnxruntime", extra="onnx")
    t0 = time.perf_counter()
    original = onnx.load(str(src), load_external_data=False)
    record: dict[str, Any] = {
        "from": {"opset": opset_of(original), "ir": int(original.ir_version)},
        "steps": [],
        "notes": [],
    }
    if _has_external_data(original):  # a proto over 2 GB cannot be rewritten in memory and re-saved
        shutil.copyfile(src, dst)
        record["notes"].append(f"normalisation skipped: {src.name} keeps its weights in external data files")
        record["to"] = record["from"]
        return record
    try:
        ref = _outputs(ort, original, samples, threads)
    except Exception as exc:  # onnxruntime's own error types: the user's file does not load or run
        raise ModelLoadError(f"model.onnx: onnxruntime cannot run {src.name} (opset {record['from']['opset']}, "
                             f"IR {record['from']['ir']}): {first_line(exc)}") from exc
    current = original
    steps: list[tuple[str, Any]] = [
        ("initializer_inputs", lambda m: (m, _drop_initializer_inputs(m))),
        ("opset", lambda m: _upgrade_opset(m, need, why)),
        ("fold", _fold),
    ]
    for name, step in steps:
        try:
            candidate, done = step(copy.deepcopy(current))
        except Exception as exc:  # the converter / onnxslim refusing this graph: say so, keep going
            record["notes"].append(f"{name}: could not be done: {type(exc).__name__}: {first_line(exc)}")
            continue
        if done is None:
            continue
        try:
            par = compare(ref, _outputs(ort, candidate, samples, threads))
        except Exception as exc:
            record["notes"].append(f"{name}: undone: onnxruntime cannot run the result ({done}): {first_line(exc)}")
            continue
        if not par["ok"]:
            record["notes"].append(
                f"{name}: undone: parity lost ({done}): max abs error {par.get('max_abs_err', float('nan')):.3g}, "
                f"worst cosine {par.get('cosine_min', float('nan')):.6f}; allowed {ATOL} + {RTOL} x max|output|, "
                f"cosine >= {COSINE_MIN}")
            continue
        record["steps"].append({"step": name, "did": done, "parity": par})
        current = candidate
    if opset_of(current) < need and not any(n.startswith("opset:") for n in record["notes"]):
        record["notes"].append(f"opset: the graph stays at opset {opset_of(current)}; {why} needs {need}")
    if current is original:
        shutil.copyfile(src, dst)
    else:
        onnx.save(current, str(dst))
    record["to"] = {"opset": opset_of(current), "ir": int(current.ir_version)}
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def prepare_source(onnx_path: Path, dst: Path, recipe: Any, example: dict[str, np.ndarray],
                   datasets: Iterable[Any], threads: int = 2) -> dict[str, Any]:
    """The pipeline's entry: normalise an ONNX source for the recipe's stages into `dst`."""
    need, why = required_opset(recipe.stages)
    return normalize(Path(onnx_path), Path(dst), need, why, parity_samples(example, datasets), threads)
