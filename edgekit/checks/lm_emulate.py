"""Language-model artifacts on the CPU classes this machine is not.

Why a prefill through the runtime's plain engine and not its generation API under QEMU: what a
class changes is the integer kernels (ONNX Runtime's MatMulNBits with int8 activations, OpenVINO's
compressed-weight MatMul), which pick their code path from CPUID exactly as an encoder's do. One
prefill of a window through the artifact's own graph runs them on many rows at once: an ONNX
Runtime session on the GenAI folder's model.onnx with an empty KV cache, or OpenVINO's stateful
IR from a reset state. Its logits are the teacher-forced next-token distribution. So the
device-side outputs job that emulates encoders runs these too, and no generation loop (one QEMU
round trip per token) is needed. Windows are cut to EMULATE_TOKENS: under emulation a token
costs 50-300x its native time. What a prefill does not run is the single-row (one new token)
kernels that decoding uses.

The same job also runs natively, and a class is judged by what it changed between the two on
the same cut windows, applied to the artifact's native whole-window measures (`shifted`).

Float artifacts are not emulated (no integer kernel computes them): where a class may run one at
another precision than this machine did (OpenVINO: bf16 on AMX and AVX-512 BF16, f32 elsewhere),
that precision is forced and checked natively on the whole windows, as for encoders."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.checks import lm as lmcheck
from edgekit.runtimes import genai, ort, ov, ov_genai

EMULATE_TOKENS = 32  # a prefill under QEMU costs in proportion to its tokens; 32 keep a window to seconds
# the engine that runs each generation runtime's model file outside its generation API
ENGINES = {genai.NAME: ort.NAME, ov_genai.NAME: ov.NAME}


def engine_model(key: str, runtime: str, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """An outputs-job entry for one artifact x generation runtime (only the options the plain
    engine shares with the generation runner travel: OpenVINO's inference precision)."""
    opts = {"precision": options["precision"]} if runtime == ov_genai.NAME and options.get("precision") else {}
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
        if m["runtime"] == ort.NAME:
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


def shifted(native: dict[str, Any], base: dict[str, Any], moved: dict[str, Any]) -> dict[str, Any]:
    """The artifact's whole-window measures on another class, estimated: the native ones moved by
    what the class changed on the cut windows (`base`: the same engine natively, `moved`: under
    the class). Why not the cut windows' own measures: with 32 tokens of context a model agrees
    less with the reference than over a whole window, so the recipe's tolerances, set on whole
    windows, would fail an artifact the class did not change at all."""
    return {"perplexity": native["perplexity"] * moved["perplexity"] / base["perplexity"],
            "kl_mean": max(0.0, native["kl_mean"] + moved["kl_mean"] - base["kl_mean"]),
            "top1_agreement": min(1.0, max(0.0, native["top1_agreement"] + moved["top1_agreement"]
                                           - base["top1_agreement"])),
            "tokens": native["tokens"]}


def entry(summary: dict[str, Any], ref_ppl: float, samples: int, **extra: Any) -> dict[str, Any]:
    """The verification record's measures for one class check (the native LM record's fields)."""
    return {"parity_samples": samples, "cosine_mean": None, "cosine_worst": None,
            "top1_agreement": summary["top1_agreement"], "kl_mean": summary["kl_mean"], "passed": True,
            "metric": "perplexity", "value": summary["perplexity"], "reference": ref_ppl, "metric_samples": samples,
            **extra, "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _native_measures(ver: Any, name: str, rt: str) -> dict[str, Any]:
    m = ver.metrics[name][rt]
    return {"perplexity": m["value"], "kl_mean": m["kl_mean"], "top1_agreement": m["top1_agreement"],
            "tokens": m["tokens"]}


def verify_classes(recipe: Any, pairs: list[tuple[Any, str]], windows: np.ndarray, ref_logits: Callable[[Any], Any],
                   ver: Any, run_classes: Callable[..., dict[str, Any]], open_runner: Callable[..., Any],
                   progress: Any) -> None:
    """Every declared class but this one: integer artifacts under QEMU where it emulates the
    class, float ones natively at each precision the class may run; everything else recorded as
    not verified with the reason. A miss is the ParityError of the native check, naming the class."""
    from edgekit.checks import emulate
    from edgekit.runtimes.cpu_classes import FLOAT_PRECISIONS, local_class

    here = local_class()
    p = emulate.plan(recipe.deploy.classes(), here, recipe.verify.emulate)
    ver.not_verified.update(p.unverified)
    ints = [(a, rt) for a, rt in pairs if a.precision not in FLOAT_PRECISIONS and rt in ENGINES]
    # with verify.emulate off, the other classes stay unverified (the plan says why), as for encoders
    floats = [(a, rt) for a, rt in pairs if a.precision in FLOAT_PRECISIONS] if recipe.verify.emulate else []
    n = min(len(windows), recipe.verify.emulate_samples or len(windows))
    least = recipe.verify.emulate_min_samples
    if ints and p.emulated and n < least:  # QEMU would run for nothing
        for cls in p.emulated:
            ver.not_verified.setdefault(cls, f"not verified: budget: {n} evaluation window(s) planned under emulation "
                                             f"(data.evaluation.samples, verify.emulate_samples), fewer than "
                                             f"verify.emulate_min_samples {least}")
    elif ints and p.emulated:
        _emulated(recipe, ints, windows[:n, :EMULATE_TOKENS], ref_logits, ver, p, run_classes, progress)
    if floats:
        _float_precisions(recipe, floats, windows, ref_logits, ver, open_runner, progress)


def _emulated(recipe: Any, ints: list[tuple[Any, str]], cut: np.ndarray, ref_logits: Callable[[Any], Any], ver: Any,
              p: Any, run_classes: Callable[..., dict[str, Any]], progress: Any) -> None:
    """One outputs job per emulated class and the same job natively (the same engine, feeds and
    threads), so that each class is judged by what it changed against this machine."""
    from edgekit.checks import emulate
    from edgekit.runtimes.cpu_classes import local_class

    models = [engine_model(f"{a.name}/{rt}", rt, a.path, a.options.get(rt, {})) for a, rt in ints]
    inputs = feeds(cut, models)
    tick = progress("the class checks' windows natively (reference and artifacts)", 1)
    ref_logps = [lmcheck.log_softmax(ref_logits(ids)) for ids in cut]
    native = emulate.run_job(local_class(), [], None, models, inputs, recipe.profile.threads, None)
    tick(1)
    runs = run_classes(p, models, inputs)
    tokens = int(cut.shape[1])
    by_key = {f"{a.name}/{rt}": (a, rt) for a, rt in ints}
    for cls, qemu_model, key, res in emulate.counted(runs, p.emulated, list(by_key), recipe.verify.emulate_min_samples,
                                                     recipe.verify.emulate_budget_s, ver, native.errors):
        a, rt = by_key[key]
        got = res.outputs[key]
        k = len(got)
        base = score(ref_logps[:k], list(native.outputs[key][:k]), cut[:k])
        moved = score(ref_logps[:k], list(got), cut[:k])
        est = shifted(_native_measures(ver, a.name, rt), base, moved)
        where = (f"artifact {a.name!r} on {rt} under emulated {cls} (qemu {qemu_model}; the native measures moved "
                 f"by what the class changed on {k} {tokens}-token windows)")
        lmcheck.check(est, ver.metrics["reference"]["value"], recipe.verify, recipe.accuracy, where)
        # per position, not per window: one differing argmax in a 32-token window made a whole
        # window count as changed (2 windows of SmolLM2's INT4 read 0.0 while agreeing closely)
        same = float(np.mean(np.concatenate([(np.argmax(x, -1) == np.argmax(y, -1)).ravel()
                                             for x, y in zip(got, native.outputs[key][:k])])))
        ver.verified_on[a.name].append({
            "runtime": rt, **res.record(key), "samples_planned": len(cut),
            **entry(est, ver.metrics["reference"]["value"], k, window_tokens=tokens,
                    cut_windows={"native": base, "emulated": moved, "same_next_tokens_share": same})})


def _float_precisions(recipe: Any, floats: list[tuple[Any, str]], windows: np.ndarray,
                      ref_logits: Callable[[Any], Any], ver: Any, open_runner: Callable[..., Any],
                      progress: Any) -> None:
    """Float artifacts, natively on the whole evaluation windows, at each precision a declared
    class may run that this machine did not (forced), as for encoders
    (edgekit.checks.float_precision)."""
    from edgekit.checks import float_precision as fp
    from edgekit.runtimes.cpu_classes import X86_CLASSES, local_class

    here = local_class()
    others = [c for c in recipe.deploy.classes() if c in X86_CLASSES]
    threads = recipe.profile.threads
    plans = []  # (artifact, runtime, check, the native record)
    for a, rt in floats:
        options = a.options.get(rt, {})
        native = next((v for v in ver.verified_on.get(a.name, []) if v["runtime"] == rt and v["mode"] == "native"),
                      None)
        if native is None:
            continue
        engine = ov.NAME if rt == ov_genai.NAME else rt
        ran_here = options.get("precision") or ov.type_name((native.get("runner") or {}).get("inference_precision"))
        plans += [(a, rt, c, native) for c in fp.plan(engine, options, others, here, ran_here)]
    forced = sorted({(a.name, rt, c.precision) for a, rt, c, _ in plans if not c.covered})
    checked: dict[tuple[str, str, str], Any] = {}
    if forced:
        by_name = {a.name: a for a, _ in floats}
        runners, tallies = {}, {}
        try:
            for name, rt, prec in forced:
                a = by_name[name]
                runner = runners[(name, rt, prec)] = open_runner(rt, a.path, threads,
                                                                 **{**a.options.get(rt, {}), "precision": prec})
                refused = fp.ran_instead(runner, rt, prec)
                if refused:  # e.g. bf16 asked of a CPU without it
                    checked[(name, rt, prec)] = refused
                else:
                    tallies[(name, rt, prec)] = lmcheck.Tally()
            if tallies:
                tick = progress("verifying float artifacts at the precisions other classes run", len(windows))
                for ids in windows:
                    lp = lmcheck.log_softmax(ref_logits(ids))
                    for key, tally in tallies.items():
                        tally.add(lp, runners[key].logits(ids), ids)
                    tick(1)
        finally:
            for r in runners.values():
                r.close()
        ref_ppl = ver.metrics["reference"]["value"]
        for key, tally in tallies.items():
            name, rt, prec = key
            summ = tally.summary()
            lmcheck.check(summ, ref_ppl, recipe.verify, recipe.accuracy, f"artifact {name!r} on {rt} at {prec} "
                                                                         "(a precision another declared class runs)")
            checked[key] = {"runtime": rt, **entry(summ, ref_ppl, len(windows))}
    for a, rt, c, native in plans:
        done = native if c.covered else checked[(a.name, rt, c.precision)]
        if isinstance(done, str):
            ver.not_verified.setdefault(c.cls, fp.cannot_compute(a.name, rt, c, done))
            continue
        ver.not_emulated.append(fp.not_emulated(a.name, a.precision, rt, c))
        ver.verified_on[a.name].append(fp.record(done, c, a.precision, here))


def reverify(root: Path, manifest: dict[str, Any], pairs: list[tuple[dict[str, Any], str]], inputs: dict[str, Any],
             ref_argmax: np.ndarray, spec: Any, p: Any, threads: int) -> list[dict[str, Any]]:
    """`edgekit verify --cpu CLASS` of a language-model folder: the integer artifacts' prefill on
    the stored windows, cut, natively and under each emulated class, as compress does. Without
    the source model there is no reference distribution (so no KL), but the stored reference
    argmax and the windows' own tokens give top-1 agreement and perplexity on the cut windows
    exactly; the class is judged by the stored native measures moved by what it changed."""
    from edgekit.checks import emulate
    from edgekit.runtimes.cpu_classes import FLOAT_PRECISIONS, local_class

    jobs = [(a, rt) for a, rt in pairs if a.get("precision") not in FLOAT_PRECISIONS and rt in ENGINES]
    if not jobs:
        return []
    windows = np.asarray(inputs["input_ids"])
    n = min(len(windows), spec.emulate_samples or len(windows))
    cut = windows[:n, :EMULATE_TOKENS]
    models = [engine_model(f"{a['name']}/{rt}", rt, root / a["path"], (a.get("runtime_options") or {}).get(rt, {}))
              for a, rt in jobs]
    feed = feeds(cut, models)
    native = emulate.run_job(local_class(), [], None, models, feed, threads, None)
    results = []
    for cls, qemu_model in p.emulated.items():
        run = emulate.reverify_run(cls, models, feed, threads, spec)
        for a, rt in jobs:
            key = f"{a['name']}/{rt}"
            k = emulate.reverified_samples(run, key, a["name"], rt, spec, native.errors.get(key))
            got = list(run.outputs[key])
            base = lmcheck.score_stored(list(native.outputs[key][:k]), cut[:k], ref_argmax[:k])
            moved = lmcheck.score_stored(got, cut[:k], ref_argmax[:k])
            stored = manifest["metrics"][a["name"]][rt]
            est = {"perplexity": stored["value"] * moved["perplexity"] / base["perplexity"],
                   "top1_agreement": min(1.0, max(0.0, stored["top1_agreement"] + moved["top1_agreement"]
                                                  - base["top1_agreement"]))}
            where = (f"artifact {a['name']!r} on {rt} under emulated {cls} (qemu {qemu_model}; the stored native "
                     f"measures moved by what the class changed on {k} {cut.shape[1]}-token windows)")
            lmcheck.check_stored(est, manifest, where)
            results.append({"artifact": a["name"], "runtime": rt, **run.record(key), "samples": k,
                            "cosine_mean": None, "cosine_worst": None, "top1_agreement": est["top1_agreement"],
                            "perplexity": est["perplexity"],
                            "cut_windows": {"native": base, "emulated": moved, "window_tokens": int(cut.shape[1])}})
    return results
