"""llama.cpp Q4_0 as a peer of benchmarks/llm.py, built from the same fp32 directory in the same run.

llama-cpp-python has no wheel for this machine and its build pins its own numpy, so it lives in a
side environment (`--llama-python`, built from the sdist: docs/benchmarks.md says how). This
module is both sides of that split:

- in the project's environment, `build()` converts the Hugging Face directory to an f16 GGUF with
  the converter of the same llama.cpp source (`--llama-cpp DIR`, whose `gguf-py` it puts on the
  path; the converter needs torch and transformers, which only the project's environment has),
  then asks the side environment to quantize it to Q4_0 with llama.cpp's own quantizer;
- in the side environment (`python -m benchmarks._llama_cpp logits|time ...`), it scores the
  held-out windows teacher-forced and times generations with edgekit's own generation protocol
  (`edgekit.profile.generation.measure`), so that every figure of the peer is measured the way
  edgekit's artifacts are. Only edgekit's numpy-only modules are imported there."""

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

REPO = Path(__file__).resolve().parents[1]
NAME = "llama.cpp Q4_0"
RUNTIME = "llama.cpp"


def _side_env(extra: Optional[Path] = None) -> dict[str, str]:
    """The side interpreter sees this repository (for edgekit's numpy-only modules) and the
    caller's PYTHONPATH; OMP threads are capped as for every other timed child."""
    path = [str(REPO), *([str(extra)] if extra else []), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), "OMP_NUM_THREADS": "2"}


def _run(cmd: list[str], what: str, env: dict[str, str], timeout_s: float = 1800.0) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"llama.cpp peer: {what} failed: {tail[-1] if tail else 'no output'}")
    return proc.stdout


def build(llama_python: Path, llama_cpp: Path, src: Path, out: Path) -> dict[str, Any]:
    """f16 GGUF by llama.cpp's converter, then Q4_0 by its quantizer. Returns the file, the build
    time and the versions."""
    converter = llama_cpp / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise RuntimeError(f"--llama-cpp {llama_cpp}: no convert_hf_to_gguf.py there; allowed: the llama.cpp source "
                           "tree of the same version as llama-cpp-python (its sdist's vendor/llama.cpp)")
    out.mkdir(parents=True, exist_ok=True)
    f16, q4 = out / "model-f16.gguf", out / "model-q4_0.gguf"
    t0 = time.perf_counter()
    print("llama.cpp peer: converting the fp32 directory to an f16 GGUF", flush=True)
    _run([sys.executable, str(converter), str(src), "--outtype", "f16", "--outfile", str(f16)], "convert_hf_to_gguf",
         _side_env(llama_cpp / "gguf-py"))
    convert_s = time.perf_counter() - t0
    print("llama.cpp peer: quantizing to Q4_0", flush=True)
    version = _run([str(llama_python), "-m", "benchmarks._llama_cpp", "quantize", str(f16), str(q4)],
                   "llama_model_quantize", _side_env()).split()[-1]
    f16.unlink()
    return {"file": q4, "build_s": time.perf_counter() - t0, "convert_s": convert_s, "llama_cpp_python": version}


def logits_files(llama_python: Path, model: Path, windows: np.ndarray, tmp: Path) -> list[Path]:
    """Teacher-forced logits of each window, one .npy file each (a window of 512 tokens over a
    49152-token vocabulary is 100 MB: the caller reads and deletes them one at a time)."""
    np.save(tmp / "windows.npy", windows)
    _run([str(llama_python), "-m", "benchmarks._llama_cpp", "logits", str(model), str(tmp / "windows.npy"),
          str(tmp)], "teacher-forced logits", _side_env())
    return [tmp / f"logits-{i}.npy" for i in range(len(windows))]


def measure_in_child(llama_python: Path, model: Path, prompt: np.ndarray, new_tokens: int, spec: Any,
                     eos: int) -> dict[str, Any]:
    """One generation profile in a fresh side process: the job and result are those of
    edgekit.profile.generation.measure_in_child."""
    job = {"model": str(model), "threads": 2, "new_tokens": new_tokens, "eos": eos,
           "prompts": {str(len(prompt)): [int(t) for t in prompt]},
           "spec": {k: getattr(spec, k) for k in ("warmup_s", "min_duration_s", "min_iters", "max_duration_s")}}
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as tmp:
        jp, op = Path(tmp) / "job.json", Path(tmp) / "out.json"
        jp.write_text(json.dumps(job), encoding="utf-8")
        _run([str(llama_python), "-m", "benchmarks._llama_cpp", "time", str(jp), str(op)], "generation profile",
             _side_env())
        return json.loads(op.read_text(encoding="utf-8"))


# --- the side environment's half (llama_cpp importable, torch not) ---

class LlamaCppLM:
    """llama-cpp-python's model behind the generation runners' interface (generate with per-token
    timings, logits, load_s, close), greedy on the raw logits as edgekit's runners decode."""

    def __init__(self, path: str, threads: int, n_ctx: int, eos: Optional[int] = None, logits_all: bool = False):
        import llama_cpp

        t0 = time.perf_counter()
        self.llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   logits_all=logits_all, verbose=False)
        self.load_s = time.perf_counter() - t0
        self.eos = eos
        self.details = {"llama_cpp_python": llama_cpp.__version__, "threads": threads}

    def logits(self, ids: np.ndarray) -> np.ndarray:
        self.llm.reset()
        self.llm.eval([int(t) for t in ids])
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def generate(self, prompt: np.ndarray, new_tokens: int, timings: Optional[list[float]] = None) -> list[int]:
        import llama_cpp

        from edgekit.runtimes.genai import greedy

        vocab = self.llm.n_vocab()

        def step(last: Optional[int]) -> int:
            self.llm.eval([int(t) for t in prompt] if last is None else [last])
            # without logits_all, Llama.scores is no longer filled (0.3.x samples inside
            # llama.cpp): the last position's logits straight from the context
            last_logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(vocab,))
            return int(np.argmax(last_logits))

        self.llm.reset()
        return greedy(step, new_tokens, self.eos, timings)

    def close(self) -> None:
        self.llm.close()


def _quantize(src: str, dst: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama_model_quantize {src} -> Q4_0 failed")
    print(llama_cpp.__version__)


def _logits(model: str, windows_path: str, out_dir: str) -> None:
    windows = np.load(windows_path)
    lm = LlamaCppLM(model, 2, windows.shape[1], logits_all=True)
    for i, ids in enumerate(windows):
        np.save(Path(out_dir) / f"logits-{i}.npy", lm.logits(ids))
    lm.close()


def _time(job_path: str, out_path: str) -> None:
    from types import SimpleNamespace

    from edgekit.profile.generation import measure
    from edgekit.runtimes.device_side import peak_rss_mb

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    prompts = {int(p): np.asarray(ids, dtype=np.int64) for p, ids in job["prompts"].items()}
    lm = LlamaCppLM(job["model"], job["threads"], max(prompts) + job["new_tokens"], job["eos"])
    try:
        res = measure(lm, prompts, job["new_tokens"], SimpleNamespace(**job["spec"]))
    finally:
        lm.close()
    res.update(runtime=RUNTIME, threads=job["threads"], peak_rss_mb=peak_rss_mb(), details=lm.details)
    Path(out_path).write_text(json.dumps(res), encoding="utf-8")


if __name__ == "__main__":
    {"quantize": _quantize, "logits": _logits, "time": _time}[sys.argv[1]](*sys.argv[2:])
