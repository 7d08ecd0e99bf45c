"""Generation profiling of a causal LM, batch 1, the way LLM users time it: load time, time to
first token (TTFT) at each prompt length, prefill tokens/s, decode time per output token
(median, p90 and its early-stopping bound, as for latency), decode tokens/s excluding the first
token, and peak RSS.

Each measurement runs in a fresh child process (`python -m edgekit.profile.generation JOB OUT`):
its peak RSS is then the model's own, not the build's, and its load time a cold one. The
protocol is the latency one: warm up, then whole generations until both a minimum duration and a
minimum count of decode tokens are met, never past a maximum duration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.errors import BackendUnavailable, first_line
from edgekit.profile.stats import summarize

TTFT_SAMPLES = 50  # the p90 early-stopping bound at 99% needs 44


def prompts_from(stream: np.ndarray, lengths: list[int], where: str) -> dict[int, np.ndarray]:
    """Prompts of the given lengths cut from stored evaluation tokens (an artifact directory's
    reference.npz); a length the text cannot give is one line, never a prompt silently dropped."""
    longer = [p for p in lengths if p > len(stream)]
    if longer:
        from edgekit.errors import UsageError

        raise UsageError(f"{where}: profile.prompt_tokens {longer[0]} is more than the {len(stream)} evaluation "
                         f"tokens stored in reference.npz to cut the prompt from; allowed: up to {len(stream)}")
    return {p: stream[:p] for p in lengths}


def measure(runner: Any, prompts: dict[int, np.ndarray], new_tokens: int, spec: Any) -> dict[str, Any]:
    """Time greedy generations of `new_tokens` after each prompt (prompt length -> ids)."""
    t_end_warm = time.perf_counter() + spec.warmup_s
    while True:  # warm-up: at least one whole generation per prompt length, untimed
        for ids in prompts.values():
            runner.generate(ids, new_tokens)
        if time.perf_counter() >= t_end_warm:
            break
    ttft: dict[int, list[float]] = {p: [] for p in prompts}
    decode: list[float] = []
    produced: list[int] = []
    t0 = time.perf_counter()
    runs = 0
    while True:
        for p, ids in prompts.items():
            timings: list[float] = []
            out = runner.generate(ids, new_tokens, timings)
            ttft[p].append(timings[0] * 1000.0)
            decode.extend(t * 1000.0 for t in timings[1:])
            produced.append(len(out))
        runs += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= spec.max_duration_s:
            break
        if elapsed >= spec.min_duration_s and len(decode) >= spec.min_iters and runs >= 2:
            break
    # one TTFT sample per generation is too few for the p90 bound (44 at 99%): add prompt-only
    # runs (the prompt and one token) until each length has TTFT_SAMPLES, within max_duration_s
    deadline = t0 + spec.max_duration_s
    while any(len(v) < TTFT_SAMPLES for v in ttft.values()) and time.perf_counter() < deadline:
        for p, ids in prompts.items():
            if len(ttft[p]) < TTFT_SAMPLES:
                timings = []
                runner.generate(ids, 1, timings)
                ttft[p].append(timings[0] * 1000.0)
    if not decode:
        raise BackendUnavailable(f"generation profile: the model stopped at its first token every time "
                                 f"(end of sequence); nothing to time after it (new_tokens {new_tokens})")
    d = summarize(decode)
    per_prompt = {}
    for p, xs in ttft.items():
        s = summarize(xs)
        per_prompt[str(p)] = {"ttft_ms": s, "prefill_tokens_per_s": p / (s["median_ms"] / 1000.0)}
    return {
        "runs": runs, "new_tokens": new_tokens, "tokens_generated_mean": float(np.mean(produced)),
        "prompts": per_prompt, "decode_ms_per_token": d, "decode_tokens_per_s": 1000.0 / d["median_ms"],
        "load_s": runner.load_s,
    }


def _open(job: dict[str, Any]) -> Any:
    from edgekit.runtimes import genai, pytorch

    if job["runtime"] == pytorch.NAME:
        from edgekit.core.backends import require

        transformers = require("transformers", extra="hf")
        t0 = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(job["model"], dtype="float32").eval()
        runner = genai.TorchLM(model, job["threads"], job.get("eos"))
        runner.load_s = time.perf_counter() - t0
        return runner
    from edgekit.runtimes import open_runner

    return open_runner(job["runtime"], Path(job["model"]), job["threads"], **job.get("options", {}))


def child(job_path: Path, out_path: Path) -> None:
    from types import SimpleNamespace

    from edgekit.runtimes.device_side import peak_rss_mb

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    runner = _open(job)
    try:
        prompts = {int(p): np.asarray(ids, dtype=np.int64) for p, ids in job["prompts"].items()}
        res = measure(runner, prompts, job["new_tokens"], SimpleNamespace(**job["spec"]))
    finally:
        runner.close()
    res.update(runtime=job["runtime"], threads=job["threads"], peak_rss_mb=peak_rss_mb(),
               details=getattr(runner, "details", {}))
    Path(out_path).write_text(json.dumps(res), encoding="utf-8")


def measure_in_child(runtime: str, model: Path, prompts: dict[int, np.ndarray], new_tokens: int, spec: Any,
                     threads: int, eos: Optional[int] = None, timeout_s: float = 1800.0,
                     options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One measurement in a fresh process; a child that fails is one line naming the runtime.
    `options` are the runner's (an artifact's runtime settings, such as OpenVINO's precision)."""
    job = {"runtime": runtime, "model": str(model), "threads": threads, "new_tokens": new_tokens, "eos": eos,
           "options": options or {},
           "prompts": {str(p): [int(t) for t in ids] for p, ids in prompts.items()},
           "spec": {k: getattr(spec, k) for k in ("warmup_s", "min_duration_s", "min_iters", "max_duration_s")}}
    with tempfile.TemporaryDirectory(prefix="edgekit-gen-") as tmp:
        jp, op = Path(tmp) / "job.json", Path(tmp) / "out.json"
        jp.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-m", "edgekit.profile.generation", str(jp), str(op)],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0 or not op.is_file():
            tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            raise BackendUnavailable(f"generation profile of {model.name} on {runtime} failed: "
                                     f"{first_line(tail[-1] if tail else 'no output')}")
        return json.loads(op.read_text(encoding="utf-8"))


if __name__ == "__main__":
    child(Path(sys.argv[1]), Path(sys.argv[2]))
