"""Language-model artifacts on the CPU classes this machine is not.

Why a prefill through the runtime's plain engine and not its generation API under QEMU: what a
class changes is the integer kernels (ONNX Runtime's MatMulNBits with int8 activations, OpenVINO's
compressed-weight MatMul), which pick their code path from CPUID exactly as an encoder's do. One
prefill of a window through the artifact's own graph runs every one of them: an ONNX Runtime
session on the GenAI folder's model.onnx with an empty KV cache, or OpenVINO's stateful IR from a
reset state. Its logits are the teacher-forced next-token distribution, scored against the
PyTorch reference the way the native check scores them. So the device-side outputs job that
emulates encoders runs these too, and no generation loop (one QEMU round trip per token) is
needed. Windows are cut to EMULATE_TOKENS: under emulation a token costs 50-300x its native time.

Float artifacts are not emulated (no integer kernel computes them): where a class may run one at
another precision than this machine did (OpenVINO: bf16 on AMX and AVX-512 BF16, f32 elsewhere),
that precision is forced and checked natively on the same windows, as for encoders."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.checks import lm as lmcheck

EMULATE_TOKENS = 128
# the engine that runs each generation runtime's model file outside its generation API
ENGINES = {"onnxruntime-genai": "onnxruntime", "openvino-genai": "openvino"}


def engine_model(key: str, runtime: str, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """An outputs-job entry for one artifact x generation runtime (only the options the plain
    engine shares with the generation runner travel: OpenVINO's inference precision)."""
    opts = {"precision": options["precision"]} if runtime == "openvino-genai" and options.get("precision") else {}
    return {"key": key, "runtime": ENGINES[runtime], "model": str(path), "options": opts}


def feeds(windows: np.ndarray, models: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Stacked batch-1 feeds for every model's inputs: token ids, a full attention mask,
    positions, OpenVINO's beam index, and an empty KV cache for each ONNX Runtime GenAI graph
    (its shapes from the graph, the head size from genai_config.json where the graph leaves it
    symbolic). Each engine picks the names its model declares."""
    n, t = windows.shape
    out = {"input_ids": windows.astype(np.int64), "attention_mask": np.ones((n, t), dtype=np.int64),
           "position_ids": np.broadcast_to(np.arange(t, dtype=np.int64), (n, t)).copy(),
           "beam_idx": np.zeros(n, dtype=np.int32)}
    for m in models:
        if m["runtime"] == "onnxruntime":
            out.update(_empty_cache(Path(m["model"]), n))
    return out


def _empty_cache(model: Path, n: int) -> dict[str, np.ndarray]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(model), load_external_data=False).graph
    cfg_path = model.parent / "genai_config.json"
    decoder = json.loads(cfg_path.read_text(encoding="utf-8"))["model"]["decoder"] if cfg_path.is_file() else {}
    out = {}
    for i in graph.input:
        if not i.name.startswith("past_key_values."):
            continue
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        # [batch, kv heads, past length, head size]: batch n (sliced per sample), past length 0
        shape = [n, dims[1] or int(decoder.get("num_key_value_heads", 0)), 0, dims[3] or int(decoder.get("head_size", 0))]
        out[i.name] = np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
    return out


def score(ref_logps: list[np.ndarray], logits: Any, windows: np.ndarray) -> dict[str, Any]:
    """Perplexity, KL and top-1 agreement of `logits` (one [tokens, vocab] array per window)
    against the reference's log-probabilities on the same windows."""
    tally = lmcheck.Tally()
    for lp, lg, ids in zip(ref_logps, logits, windows):
        tally.add(lp, np.asarray(lg).reshape(lp.shape), ids)
    return tally.summary()


def entry(summary: dict[str, Any], ref_ppl: float, samples: int, tokens_per_window: int) -> dict[str, Any]:
    """The verification record's measures for one class check (the native LM record's fields)."""
    return {"parity_samples": samples, "cosine_mean": None, "cosine_worst": None,
            "top1_agreement": summary["top1_agreement"], "kl_mean": summary["kl_mean"], "passed": True,
            "metric": "perplexity", "value": summary["perplexity"], "reference": ref_ppl, "metric_samples": samples,
            "window_tokens": tokens_per_window,
            "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def verify_classes(recipe: Any, pairs: list[tuple[Any, str]], windows: np.ndarray, ref_logits: Callable[[Any], Any],
                   ver: Any, run_classes: Callable[..., dict[str, Any]], open_runner: Callable[..., Any],
                   progress: Any) -> None:
    """Every declared class but this one: integer artifacts under QEMU where it emulates the
    class, float ones natively at each precision the class may run; everything else recorded as
    not verified with the reason. A miss is the ParityError of the native check, naming the class."""
    from edgekit.checks import emulate
    from edgekit.runtimes import ov
    from edgekit.runtimes.cpu_classes import FLOAT_PRECISIONS, X86_CLASSES, float_precisions, local_class

    here = local_class()
    p = emulate.plan(recipe.deploy.classes(), here, recipe.verify.emulate)
    ver.not_verified.update(p.unverified)
    ints = [(a, rt) for a, rt in pairs if a.precision not in FLOAT_PRECISIONS and rt in ENGINES]
    # with verify.emulate off, the other classes stay unverified (the plan says why), as for encoders
    floats = [(a, rt) for a, rt in pairs if a.precision in FLOAT_PRECISIONS] if recipe.verify.emulate else []
    others = [c for c in recipe.deploy.classes() if c in X86_CLASSES]
    if not (ints and p.emulated) and not (floats and others):
        return
    n = min(len(windows), recipe.verify.emulate_samples or len(windows))
    cut = windows[:n, :EMULATE_TOKENS]
    tick = progress("reference logits for the class checks", n)
    ref_logps = []
    for ids in cut:
        ref_logps.append(lmcheck.log_softmax(ref_logits(ids)))
        tick(1)
    ref_ppl = score(ref_logps, ref_logps, cut)["perplexity"]  # log-probabilities are their own logits
    threads = recipe.profile.threads

    # integer artifacts: one emulated outputs job per class, unless too few windows are planned
    # to ever reach the minimum (QEMU would run for nothing)
    least = recipe.verify.emulate_min_samples
    if ints and p.emulated and n < least:
        for cls in p.emulated:
            ver.not_verified.setdefault(cls, f"not verified: budget: {n} evaluation window(s) planned under emulation "
                                             f"(data.evaluation.samples, verify.emulate_samples), fewer than "
                                             f"verify.emulate_min_samples {least}")
    elif ints and p.emulated:
        models = [engine_model(f"{a.name}/{rt}", rt, a.path, a.options.get(rt, {})) for a, rt in ints]
        runs = run_classes(p, models, feeds(cut, models))
        for cls, qemu_model in p.emulated.items():
            res = runs[cls]
            if isinstance(res, emulate.EmulationError):
                ver.not_verified[cls] = str(res)
                ver.warnings.append(f"not verified on {cls}: {res}")
                continue
            for a, rt in ints:
                key = f"{a.name}/{rt}"
                if key in res.errors:
                    ver.warnings.append(f"{key} did not run under emulated {cls}: {res.errors[key]}")
                    ver.not_verified.setdefault(cls, f"{key} did not run under emulation: {res.errors[key]}")
                    continue
                short = emulate.budget_shortfall(res, key, recipe.verify.emulate_min_samples,
                                                 recipe.verify.emulate_budget_s)
                if short:
                    ver.warnings.append(f"{key} on {cls}: {short}")
                    ver.not_verified.setdefault(cls, f"{key}: {short}")
                    continue
                got = res.outputs[key]
                k = len(got)
                summ = score(ref_logps[:k], list(got), cut[:k])
                where = f"artifact {a.name!r} on {rt} under emulated {cls} (qemu {qemu_model}, {cut.shape[1]}-token windows)"
                lmcheck.check(summ, score(ref_logps[:k], ref_logps[:k], cut[:k])["perplexity"], recipe.verify,
                              recipe.accuracy, where)
                ver.verified_on[a.name].append({"runtime": rt, **res.record(key), "samples_planned": n,
                                                **entry(summ, ref_ppl, k, cut.shape[1])})

    # float artifacts: natively, at each precision a declared class may run them
    for a, rt in floats:
        options = a.options.get(rt, {})
        native = next((v for v in ver.verified_on.get(a.name, []) if v["runtime"] == rt and v["mode"] == "native"),
                      None)
        if native is None:
            continue
        engine = ov.NAME if rt == "openvino-genai" else rt
        ran_here = options.get("precision") or ov.type_name((native.get("runner") or {}).get("inference_precision"))
        checked: dict[Optional[str], Any] = {}
        for cls in others:
            for prec in float_precisions(engine, cls, options) or (None,):  # None: as stored
                at = prec or f"{a.precision} as stored"
                if cls == here and (prec is None or prec == ran_here):
                    continue  # the native record is that check
                # what ran here is what this class runs: the native record covers it; else force it
                if prec is not None and prec != ran_here and prec not in checked:
                    runner = open_runner(rt, a.path, threads, **{**options, "precision": prec})
                    try:
                        ran = ov.type_name((getattr(runner, "details", None) or {}).get("inference_precision", prec))
                        t = progress(f"verifying {a.name} on {rt} at {prec}", 1)
                        got = [runner.logits(ids) for ids in cut]
                        t(1)
                    finally:
                        runner.close()
                    if ran != prec:  # e.g. bf16 asked of a CPU without it
                        checked[prec] = f"{rt} ran {ran} when asked for {prec}"
                    else:
                        summ = score(ref_logps, got, cut)
                        lmcheck.check(summ, ref_ppl, recipe.verify, recipe.accuracy,
                                      f"artifact {a.name!r} on {rt} at {prec} (a precision {cls} runs)")
                        checked[prec] = summ
                if prec in checked and isinstance(checked[prec], str):
                    ver.not_verified.setdefault(cls, f"{a.name} on {rt}: {cls} may run it at {prec}, which this "
                                                     f"machine cannot compute ({checked[prec]}); verify it on such a "
                                                     f"{cls} CPU")
                    continue
                why = (f"{a.precision} artifact: no integer kernel computes it, so QEMU has nothing class-specific "
                       f"to reproduce; {rt} may run it at {at} on {cls}, verified natively at that precision")
                ver.not_emulated.append({"artifact": a.name, "runtime": rt, "class": cls, "precision": at,
                                         "reason": why})
                record = ({k: v for k, v in native.items() if k not in ("cpu_class", "mode", "cpu_model", "cpu_flags")}
                          if prec is None or prec == ran_here else
                          {"runtime": rt, **entry(checked[prec], ref_ppl, n, cut.shape[1])})
                ver.verified_on[a.name].append({**record, "cpu_class": cls, "mode": "native-precision",
                                                "cpu_model": f"this {here} host, at {at}", "precision": at})
