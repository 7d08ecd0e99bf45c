"""target.onnxruntime-genai: a causal LM's Hugging Face directory to an ONNX Runtime GenAI folder
(model.onnx with its KV cache, genai_config.json, the tokenizer), by onnxruntime-genai's own
model builder.

Why the builder rather than edgekit's ONNX export and INT4 stage: the builder writes the
attention as ONNX Runtime's fused GroupQueryAttention with a shared KV buffer and the config
that `og.Generator` reads; an exported graph would need all of that rebuilt by hand, and a user
comparing against the builder would be comparing two exporters, not two quantizations. So
edgekit chooses the builder's settings, checks them against the model before a minute is spent,
runs it in a child process (its imports and memory leave with it) and records what it made.
INT4/INT8 weights are packed by onnxruntime's block quantizer on the builder's fp32 graph unless
the recipe names one of the builder's own algorithms (genai_requant says why).
The builder needs `onnx-ir`, which onnxruntime-genai does not declare: the `llm` extra has it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from edgekit.core.backends import require, version_of
from edgekit.errors import StageError
from edgekit.export.genai_requant import requantize
from edgekit.export.genai_sublayers import remove_sublayers
from edgekit.runtimes import genai
from edgekit.sources import lm_sublayers
from edgekit.sources.lm_shapes import BLOCK_SIZES, causal_lm_of, check_block
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class GenaiConfig(StageConfig):
    kind: Literal["target.onnxruntime-genai"]
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="artifact name; genai_<precision> if unset")
    precision: Literal["fp32", "fp16", "int4", "int8"] = "int4"
    block_size: int = Field(32, description="weight-only block (group) size along each MatMul's input dimension")
    symmetric: bool = True
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4, description="MatMulNBits compute type: 4 = int8 activations (the CPU default), 1 = fp32")
    algorithm: Literal["default", "rtn", "k_quant"] = Field(
        "default", description="the builder's names (its algo_config); default is onnxruntime's block quantizer, "
                               "which edgekit runs on the builder's fp32 graph (it works at every block size)")
    int8_layers: list[Literal["lm_head"]] = Field(
        [], description="layers kept at int8 inside an int4 model (lm_head: the largest, most output-sensitive one)")

    @model_validator(mode="after")
    def _settings(self) -> "GenaiConfig":
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size {self.block_size} is not one the builder takes; allowed: "
                             f"{', '.join(map(str, BLOCK_SIZES))}")
        if self.precision not in ("int4", "int8") and (self.int8_layers or "block_size" in self.model_fields_set):
            raise ValueError(f"block_size and int8_layers apply to precision int4 or int8, not {self.precision}")
        return self

    def reads_weight_only(self) -> bool:
        return self.precision in ("int4", "int8")

    def weight_only_conflict(self) -> Optional[str]:
        if self.algorithm != "default":
            return f"algorithm {self.algorithm!r} is the builder's own quantizer"
        return None

    @property
    def artifact_name(self) -> str:
        return self.name or f"genai_{self.precision}"

    def produces(self) -> list[str]:
        return [self.artifact_name]


def known_refusal(config: dict[str, Any]) -> Optional[str]:
    """Configs the builder (0.18) is known to mis-read, said before it runs, in words a user can
    act on (each found by building a tiny model of every family edgekit accepts)."""
    family = config.get("model_type")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if family == "phi3" and config.get("max_position_embeddings") != config.get("original_max_position_embeddings") \
            and rope.get("rope_type", rope.get("type")) != "longrope":
        return (f"it takes a Phi-3 whose max_position_embeddings ({config.get('max_position_embeddings')}) differs from "
                f"original_max_position_embeddings ({config.get('original_max_position_embeddings')}) for a long-RoPE "
                f"model, and this one's rope_type is {rope.get('rope_type', rope.get('type'))!r}; make the two equal")
    return None


def requantized(cfg: GenaiConfig) -> bool:
    """Whether edgekit packs the weights itself (genai_requant) on the builder's fp32 graph."""
    return cfg.precision in ("int4", "int8") and cfg.algorithm == "default"


def builder_command(src: Path, out: Path, cache: Path, cfg: GenaiConfig) -> list[str]:
    precision = "fp32" if requantized(cfg) else cfg.precision
    cmd = [sys.executable, "-m", "edgekit.export.genai_builder", "-i", str(src), "-o", str(out),
           "-p", precision, "-e", "cpu", "-c", str(cache)]
    extra: list[str] = []
    if precision in ("int4", "int8"):
        extra += [f"block_size={cfg.block_size}", f"is_symmetric={'true' if cfg.symmetric else 'false'}",
                  f"accuracy_level={cfg.accuracy_level}", f"algo_config={cfg.algorithm}"]
        if "lm_head" in cfg.int8_layers:
            extra.append("matmul_mixed_precision=last_matmul:int8")
    return cmd + (["--extra_options", *extra] if extra else [])


def _op_counts(model_path: Path) -> dict[str, int]:
    onnx = require("onnx", extra="onnx")
    model = onnx.load(str(model_path), load_external_data=False)
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


class TargetGenai(Stage):
    kind = "target.onnxruntime-genai"
    Config = GenaiConfig

    def apply(self, state: ModelState, cfg: GenaiConfig) -> tuple[ModelState, StageRecord]:
        lm = causal_lm_of(state, self.kind)
        require("onnxruntime_genai", extra="llm", why="its model builder")
        require("onnx_ir", extra="llm", why="onnxruntime-genai's model builder imports it")
        config = json.loads((lm.directory / "config.json").read_text(encoding="utf-8"))
        refusal = known_refusal(config)
        if refusal:
            raise StageError(f"{self.kind}: onnxruntime-genai's model builder refuses {lm.family} "
                             f"({lm.architecture}): {refusal}")
        fixed = state.weight_only if cfg.precision in ("int4", "int8") else None
        if cfg.precision in ("int4", "int8"):
            # after quantize.weight_only only the lm_head (and the tied embedding reading its
            # blocks) takes this block: the other layers keep their own groups or stay float
            check_block(cfg.block_size, config, hidden_only=fixed is not None)
        out = state.workdir / cfg.artifact_name
        tick = state.progress(f"building {cfg.artifact_name} with onnxruntime-genai's model builder "
                              f"({cfg.precision}, {lm.family})", 1)
        t0 = time.perf_counter()
        packing: dict[str, Any] = {}
        # the builder's scratch files (temporary external data, the fp32 graph edgekit packs) stay
        # out of the artifact
        with tempfile.TemporaryDirectory(prefix="edgekit-genai-") as cache:
            built = Path(cache) / "fp32" if requantized(cfg) else out
            cmd = builder_command(lm.directory if fixed is None else fixed.directory, built, Path(cache) / "scratch", cfg)
            # GIT_DIR: the builder stamps `git rev-parse HEAD` of whatever repository holds its
            # install into producer_version, so with a venv inside a project (edgekit's own
            # .venv) every commit of that project changed model.onnx's bytes and missed the
            # emulation cache; without a repository it stamps its wheel's own commit
            env = {**os.environ, "GIT_DIR": str(Path(cache) / "no-git")}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0 or not (built / "model.onnx").is_file():
                raise StageError(f"{self.kind}: onnxruntime-genai's model builder refused {lm.family} "
                                 f"({lm.architecture}): {_last_error(proc.stderr + proc.stdout)}")
            if requantized(cfg):
                bits = 4 if cfg.precision == "int4" else 8
                packing = requantize(built, out, bits, cfg.block_size, cfg.symmetric,
                                     8 if "lm_head" in cfg.int8_layers else bits, cfg.accuracy_level, fixed)
                for f in built.iterdir():
                    if f.is_file() and not f.name.startswith("model.onnx"):
                        shutil.copy2(f, out / f.name)
        gone = lm_sublayers.removed(config)
        if gone:  # prune.depth's removed sublayers: the builder built them, zeroed; they go now
            packing.update(remove_sublayers(out, gone, int(config["num_hidden_layers"])))
        seconds = time.perf_counter() - t0
        tick(1)
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "model.onnx")
        ops = _op_counts(out / "model.onnx")
        precision = "mixed" if cfg.int8_layers and cfg.precision == "int4" else cfg.precision
        state.add(Artifact(cfg.artifact_name, out / "model.onnx", genai.FORMAT, fixed.precision if fixed else precision,
                           self.kind, extra_files=tuple(files)))
        measured = {"builder_s": round(seconds, 2), "onnxruntime_genai": version_of("onnxruntime_genai"),
                    "family": lm.family, "command": " ".join(cmd[1:]).replace(str(state.workdir.parent), "<artifact>").replace(cache, "<scratch>"),
                    "op_counts": ops, "matmul_nbits": ops.get("MatMulNBits", 0), **packing}
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.artifact_name],
                                  measured=measured)


def _last_error(text: str) -> str:
    """The builder prints progress and warnings before its error: the last line that names one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if any(w in ln for w in ("Error", "error", "not supported", "NotImplemented")):
            return ln[:400]
    return (lines[-1] if lines else "no output")[:400]
