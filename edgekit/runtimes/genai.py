"""ONNX Runtime GenAI: a causal LM folder (genai_config.json, model.onnx with its KV cache,
the tokenizer) run by `og.Model` / `og.Generator`, the way an application ships it.

A language-model runner answers two questions rather than `run(feeds)`: the next-token logits
of a window of text, all positions at once (teacher forcing, for perplexity, KL and top-1
agreement against the reference), and a greedy continuation, timed token by token (time to
first token, then decode time per token). `TorchLM` answers the same for the fp32 PyTorch
reference, so that verification and profiling read one protocol."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.backends import require, version_of
from edgekit.errors import ModelLoadError, UsageError, first_line
from edgekit.runtimes import pytorch
from edgekit.runtimes.base import Runner
from edgekit.runtimes.registry import Problem, RuntimeInfo

NAME = "onnxruntime-genai"
FORMAT = "genai-onnx"  # a folder: genai_config.json beside model.onnx (the artifact path)
CONFIG = "genai_config.json"

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.genai:GenaiRunner", formats=(FORMAT,), extra="llm",
    summary="ONNX Runtime GenAI (og.Model / og.Generator): causal LMs with their KV cache, on the CPU.",
    hardware="cpu", engine=None, cpu_bound=True, records=("genai_version", "threads"),
    compatibility="edgekit.runtimes.genai:check",
)


class LMRunner(Runner):
    """What verification and profiling ask of a causal LM on a runtime."""

    eos: Optional[int] = None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Full-sequence logits for `input_ids` [1, seq] (the generic runner protocol)."""
        ids = np.asarray(feeds["input_ids"]).reshape(-1)
        return [self.logits(ids)[None]]

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Next-token logits at every position of `ids` (1-D), float32 [seq, vocab]."""
        raise NotImplementedError

    def generate(self, prompt: np.ndarray, new_tokens: int, timings: Optional[list[float]] = None) -> list[int]:
        """Greedy continuation of `prompt` (1-D ids): up to `new_tokens` ids, stopping at EOS.
        `timings` receives the seconds each new token took, the first one including the prompt
        (time to first token)."""
        raise NotImplementedError


def folder_of(path: Path) -> Path:
    """An artifact is named by its model.onnx; the runtime opens the folder around it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG).is_file():
        raise UsageError(f"{NAME}: {folder} has no {CONFIG}; an onnxruntime-genai artifact is a folder built by "
                         "target.onnxruntime-genai (or onnxruntime-genai's model builder)")
    return folder


def check(path: Path) -> list[Problem]:
    """Offline: the folder is one og.Model reads, and ONNX Runtime's CPU kernels cover every node
    of its model.onnx (MatMulNBits and GroupQueryAttention are contrib kernels)."""
    from edgekit.runtimes import ort

    try:
        folder = folder_of(path)
    except UsageError as exc:
        return [Problem(NAME, str(exc).removeprefix(f"{NAME}: "))]
    return [dataclasses.replace(p, target=NAME) for p in ort.check_CPUExecutionProvider(folder / "model.onnx")]


def attention_window(model: Path) -> int:
    """The longest sliding window of the graph's GroupQueryAttention nodes (0 when none has
    one): the builder writes it there (`local_window_size`), not in genai_config.json for CPU."""
    onnx = require("onnx", extra="onnx")
    graph = onnx.load(str(model), load_external_data=False).graph
    sizes = [a.i for n in graph.node if n.op_type == "GroupQueryAttention" for a in n.attribute
             if a.name == "local_window_size"]
    return max([s for s in sizes if s > 0], default=0)


class GenaiRunner(LMRunner):
    _holds = ("model", "tokenizer")

    def __init__(self, path: Path, threads: int) -> None:
        og = require("onnxruntime_genai", extra="llm")
        folder = folder_of(path)
        t0 = time.perf_counter()
        try:
            config = og.Config(str(folder))
            config.clear_providers()  # the CPU, whatever the folder was built for
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}}))
            self.model = og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as exc:  # og raises RuntimeError with the ORT message
            raise ModelLoadError(f"{NAME}: cannot load {folder}: {first_line(exc)}") from exc
        self.load_s = time.perf_counter() - t0
        self.runtime = NAME
        self._og = og
        cfg = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        self.context = int(cfg["model"].get("context_length") or cfg["search"].get("max_length") or 0)
        eos = cfg["model"].get("eos_token_id")
        self.eos = eos[0] if isinstance(eos, list) else eos
        self.window = attention_window(folder / cfg["model"]["decoder"].get("filename", "model.onnx"))
        self.details = {"genai_version": version_of("onnxruntime_genai"), "threads": threads}

    def _generator(self, length: int) -> Any:
        params = self._og.GeneratorParams(self.model)
        # the KV cache holds max_length positions, and a sliding-window attention refuses a cache
        # shorter than its window (Gemma-3's GroupQueryAttention nodes), however short the text
        params.set_search_options(max_length=min(self.context, max(length, self.window)), batch_size=1,
                                  do_sample=False)
        return self._og.Generator(self.model, params)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int32).reshape(-1)
        g = self._generator(len(ids) + 1)
        g.append_tokens(ids)
        return np.asarray(g.get_output("logits"), dtype=np.float32)[0]

    def generate(self, prompt: np.ndarray, new_tokens: int, timings: Optional[list[float]] = None) -> list[int]:
        prompt = np.asarray(prompt, dtype=np.int32).reshape(-1)
        g = self._generator(len(prompt) + new_tokens)
        out: list[int] = []
        t0 = time.perf_counter()
        g.append_tokens(prompt)  # the prompt's forward pass: part of the first token's time
        while len(out) < new_tokens and not g.is_done():
            g.generate_next_token()
            out.append(int(g.get_next_tokens()[0]))
            t1 = time.perf_counter()
            if timings is not None:
                timings.append(t1 - t0)
            t0 = t1
        return out


class TorchLM(LMRunner):
    """The fp32 PyTorch reference, with its KV cache, timed the same way as the artifacts."""

    _holds = ("model",)

    def __init__(self, model: Any, threads: int, eos: Optional[int] = None) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model, self.runtime, self.eos, self.load_s = model, pytorch.NAME, eos, None
        self.details = {"torch": torch.__version__, "threads": threads}
        # transformers 5.2x renamed the KV-cache argument (`past_key_values` -> `cache`); take
        # whichever this version's forward names, so that neither warns nor breaks
        import inspect

        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def logits(self, ids: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.asarray(ids, dtype=np.int64).reshape(1, -1)))
        return out.logits[0].float().numpy()

    def generate(self, prompt: np.ndarray, new_tokens: int, timings: Optional[list[float]] = None) -> list[int]:
        import torch

        state: dict[str, Any] = {"past": None}

        def step(last: Optional[int]) -> int:
            ids = (torch.from_numpy(np.asarray(prompt, dtype=np.int64).reshape(1, -1)) if last is None
                   else torch.tensor([[last]]))
            res = self.model(ids, use_cache=True, **{self._cache_arg: state["past"]})
            state["past"] = getattr(res, "cache", None) or res.past_key_values
            return int(res.logits[0, -1].argmax())

        with torch.inference_mode():
            return greedy(step, new_tokens, self.eos, timings)


def greedy(step: Any, new_tokens: int, eos: Optional[int], timings: Optional[list[float]] = None) -> list[int]:
    """Greedy decoding timed token by token, for runners that decode in Python: `step(None)`
    runs the prompt and returns the first token (its time is the TTFT), `step(t)` feeds token t
    and returns the next; it stops after `new_tokens` or at `eos`."""
    out: list[int] = []
    last: Optional[int] = None
    t0 = time.perf_counter()
    while len(out) < new_tokens:
        last = step(last)
        out.append(last)
        t1 = time.perf_counter()
        if timings is not None:
            timings.append(t1 - t0)
        t0 = t1
        if last == eos:
            break
    return out
