"""OpenVINO GenAI: a causal LM folder (a stateful openvino_model.xml with its KV cache as state,
openvino_tokenizer.xml / openvino_detokenizer.xml, config.json) run by
`openvino_genai.LLMPipeline`, the way an application ships it.

Greedy continuations and their timing go through LLMPipeline. Teacher-forced logits (perplexity,
KL, top-1 agreement) do not exist in its API, so they come from the same IR compiled by
OpenVINO with the same properties, one whole window per request with the state reset between
windows. The precisions the CPU plugin chose (bf16 inference on AMX, a u8 KV cache by default)
are read back and recorded, since they, not the IR, decide the numbers."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.backends import require, version_of
from edgekit.errors import ModelLoadError, UsageError, first_line
from edgekit.runtimes.genai import LMRunner
from edgekit.runtimes.registry import Problem, RuntimeInfo

NAME = "openvino-genai"
FORMAT = "openvino-genai"  # a folder: openvino_model.xml (the artifact path) beside the tokenizer IRs
MODEL = "openvino_model.xml"
TOKENIZER = "openvino_tokenizer.xml"

INFO = RuntimeInfo(
    name=NAME, where="edgekit.runtimes.ov_genai:OVGenaiRunner", formats=(FORMAT,), extra="llm",
    summary="OpenVINO GenAI (LLMPipeline): causal LMs as a stateful IR with tokenizer IRs, CPU plugin.",
    hardware="cpu", engine=None, cpu_bound=True,
    records=("genai_version", "device", "inference_precision", "kv_cache_precision", "attention_backend", "threads"),
    compatibility="edgekit.runtimes.ov_genai:check",
)


def folder_of(path: Path) -> Path:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    missing = [f for f in (MODEL, TOKENIZER) if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"{NAME}: {folder} has no {' or '.join(missing)}; an openvino-genai artifact is a folder "
                         "built by target.openvino-genai (a stateful IR beside its tokenizer IRs)")
    return folder


def check(path: Path) -> list[Problem]:
    """Offline: the folder holds what LLMPipeline reads, the IR is stateful, and the CPU plugin
    supports every operation in it (query_model, as for the `openvino` row)."""
    from edgekit.runtimes import ov

    try:
        folder = folder_of(path)
    except UsageError as exc:
        return [Problem(NAME, str(exc).removeprefix(f"{NAME}: "))]
    found = [dataclasses.replace(p, target=NAME) for p in ov.check(folder / MODEL)]
    try:
        model = require("openvino", extra="openvino").Core().read_model(str(folder / MODEL))
    except RuntimeError:  # unreadable: ov.check has said why
        return found
    problems = [] if model.get_sinks() else [Problem(NAME, "the IR has no state (no KV cache as ReadValue / Assign); "
                                                           "LLMPipeline needs a stateful model",
                                                     fix="build it with target.openvino-genai")]
    return problems + found


def _eos(folder: Path) -> Optional[int]:
    for name in ("generation_config.json", "config.json"):
        if (folder / name).is_file():
            eos = json.loads((folder / name).read_text(encoding="utf-8")).get("eos_token_id")
            if eos is not None:
                return int(eos[0] if isinstance(eos, list) else eos)
    return None


class OVGenaiRunner(LMRunner):
    _holds = ("pipe", "request", "compiled")

    def __init__(self, path: Path, threads: int, device: str = "CPU", precision: Optional[str] = None,
                 kv_cache: Optional[str] = None, attention_backend: Optional[str] = None) -> None:
        self._ov = require("openvino", extra="openvino")
        self._ovg = require("openvino_genai", extra="llm")
        self.folder = folder_of(path)
        self.device, self.runtime, self.eos = device, NAME, _eos(self.folder)
        self.props: dict[str, Any] = {"INFERENCE_NUM_THREADS": int(threads)}
        if precision:
            self.props["INFERENCE_PRECISION_HINT"] = precision
        if kv_cache:
            self.props["KV_CACHE_PRECISION"] = kv_cache
        pipe_props = dict(self.props)
        if attention_backend:  # LLMPipeline's own option (SDPA: the IR's attention as it is; PA: paged)
            pipe_props["ATTENTION_BACKEND"] = attention_backend.upper()
        t0 = time.perf_counter()
        try:
            self.pipe = self._ovg.LLMPipeline(str(self.folder), device, **pipe_props)
        except Exception as exc:  # openvino_genai raises RuntimeError with the plugin's message
            raise ModelLoadError(f"{NAME}: cannot load {self.folder}: {first_line(exc)}") from exc
        self.load_s = time.perf_counter() - t0
        self.compiled: Any = None
        self.request: Any = None
        from edgekit.runtimes.ov import type_name

        core = self._ov.Core()
        chosen = {k: type_name(self.props.get(k) or core.get_property(device.split(".")[0], k))
                  for k in ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION")}
        self.details = {"genai_version": version_of("openvino_genai"), "device": device, "threads": threads,
                        "inference_precision": chosen["INFERENCE_PRECISION_HINT"],
                        "kv_cache_precision": chosen["KV_CACHE_PRECISION"],
                        "attention_backend": attention_backend or "default"}

    def logits(self, ids: np.ndarray) -> np.ndarray:
        if self.request is None:
            self.compiled = self._ov.Core().compile_model(str(self.folder / MODEL), self.device, self.props)
            self.request = self.compiled.create_infer_request()
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        self.request.reset_state()
        out = self.request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids),
                                  "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
                                  "beam_idx": np.zeros(1, np.int32)})
        return np.array(out["logits"][0], dtype=np.float32)

    def generate(self, prompt: np.ndarray, new_tokens: int, timings: Optional[list[float]] = None) -> list[int]:
        ovg = self._ovg
        ids = np.asarray(prompt, dtype=np.int64).reshape(1, -1)
        config = ovg.GenerationConfig()
        config.max_new_tokens = int(new_tokens)
        config.do_sample = False
        config.apply_chat_template = False  # raw token ids in, as every runtime gets them
        if self.eos is not None:
            config.eos_token_id = self.eos
        out: list[int] = []
        stamps: list[float] = []

        class Stamp(ovg.StreamerBase):
            """Called as each token is produced: the time of each, for TTFT and decode per token."""

            def write(self, token: Any) -> Any:
                chunk = [int(t) for t in (token if isinstance(token, (list, tuple)) else [token])]
                now = time.perf_counter()
                out.extend(chunk)
                stamps.extend([now] * len(chunk))
                return ovg.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        t0 = time.perf_counter()
        self.pipe.generate(ovg.TokenizedInputs(self._ov.Tensor(ids), self._ov.Tensor(np.ones_like(ids))),
                           config, Stamp())
        if timings is not None:
            timings.extend(np.diff([t0, *stamps]).tolist())
        return out[:new_tokens]

