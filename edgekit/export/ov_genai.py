"""target.openvino-genai: a causal LM's Hugging Face directory to an OpenVINO GenAI folder (a
stateful IR with its KV cache as state, openvino_tokenizer.xml / openvino_detokenizer.xml, the
config files), weights compressed by NNCF `compress_weights`.

The IR comes from `export/ov_stateful.py` (OpenVINO's own conversion; why not optimum-intel is
said there). NNCF runs on the stateful model itself, as LLMPipeline will run it: its data-aware
methods (AWQ, scale estimation, GPTQ, activation-based sensitivity for `ratio`) take the recipe's
calibration windows as whole-prompt feeds, the state reset between them."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import shutil
import time
from typing import Any, Literal, Optional, Union, get_args

import numpy as np
from pydantic import Field, field_validator, model_validator

from edgekit.core.backends import require, version_of
from edgekit.errors import DataError, RecipeError, StageError, first_line
from edgekit.export import ov_save
from edgekit.sources.lm_shapes import causal_lm_of, check_block
from edgekit.runtimes import ov_genai
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState

GROUP_SIZES = (8, 16, 32, 64, 128, 256)
INT4_ONLY = ("group_size", "ratio", "sensitivity_metric", "backup_mode", "all_layers", "data_aware")
# files of the source directory that travel with the IR (the tokenizer's own, for other tools)
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "chat_template.jinja", "tokenizer.model")
# NNCF's sensitivity metrics that read activations, and so need calibration data
DataMetric = Literal["hessian_input_activation", "mean_activation_variance", "max_activation_variance",
                     "mean_activation_magnitude"]
DATA_METRICS = get_args(DataMetric)


class OVGenaiConfig(StageConfig):
    kind: Literal["target.openvino-genai"]
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="artifact name; ov_<weights> if unset")
    weights: Literal["fp32", "fp16", "int8_asym", "int8_sym", "int4_sym", "int4_asym"] = Field(
        "int4_sym", description="NNCF weight compression mode; fp32 / fp16: no compression (fp16: stored as fp16)")
    group_size: int = Field(64, description="int4 group along each MatMul's input dimension; -1 = per channel")
    ratio: float = Field(1.0, gt=0.0, le=1.0, description="share of the int4-eligible layers in int4, the rest at backup_mode")
    sensitivity_metric: Optional[Union[Literal["weight_quantization_error"], DataMetric]] = Field(
        None, description="how NNCF ranks layers for ratio < 1; activation metrics need data.calibration")
    backup_mode: Literal["int8_asym", "int8_sym", "none"] = Field(
        "int8_asym", description="precision of the layers int4 leaves out (embeddings, lm_head, 1 - ratio)")
    all_layers: bool = Field(False, description="int4 for the embeddings and lm_head too (NNCF keeps them at backup_mode)")
    data_aware: list[Literal["awq", "scale_estimation", "gptq"]] = []
    subset_size: Optional[int] = Field(None, ge=1, description="calibration windows NNCF reads; all if unset")
    inference_precision: Literal["auto", "f32", "bf16"] = Field(
        "auto", description="OpenVINO's INFERENCE_PRECISION_HINT at run time; auto = the device default (bf16 on AMX)")
    kv_cache_precision: Literal["auto", "f32", "f16", "bf16", "u8"] = Field(
        "auto", description="the CPU plugin's KV_CACHE_PRECISION; auto = its default (u8 on x86)")
    attention_backend: Literal["auto", "sdpa", "pa"] = Field(
        "auto", description="LLMPipeline's attention: sdpa (the IR's own), pa (paged); auto = sdpa for "
                            "sliding-window models, LLMPipeline's default otherwise")

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v != -1 and v not in GROUP_SIZES:
            raise ValueError(f"group_size must be -1 (per channel) or one of {', '.join(map(str, GROUP_SIZES))}, got {v}")
        return v

    @model_validator(mode="after")
    def _settings(self) -> "OVGenaiConfig":
        misplaced = sorted(self.model_fields_set & set(INT4_ONLY)) if not self.weights.startswith("int4") else []
        if misplaced:
            raise ValueError(f"{misplaced[0]} applies to weights int4_sym / int4_asym, not {self.weights}")
        if "gptq" in self.data_aware and "awq" in self.data_aware:
            raise ValueError("data_aware: gptq and awq cannot be combined; pick one")
        if self.sensitivity_metric and self.ratio == 1.0:
            raise ValueError("sensitivity_metric ranks layers for ratio < 1; with ratio 1.0 every layer is int4")
        if "subset_size" in self.model_fields_set and not self.needs_data:
            raise ValueError("subset_size applies with data_aware methods or an activation sensitivity_metric; none is set")
        return self

    def reads_weight_only(self) -> bool:
        return self.weights not in ("fp32", "fp16")

    def weight_only_conflict(self) -> Optional[str]:
        own = sorted(self.model_fields_set & {"ratio", "sensitivity_metric", "data_aware", "subset_size"})
        if own:
            return f"{own[0]} is a setting of NNCF's own int4"
        # after quantize.weight_only, group_size is the group of the embeddings and lm_head that
        # all_layers puts at int4: it means nothing without it
        if "group_size" in self.model_fields_set and not self.all_layers:
            return "group_size applies to the embeddings and lm_head with all_layers: true"
        return None

    @property
    def needs_data(self) -> bool:
        return bool(self.data_aware) or self.sensitivity_metric in DATA_METRICS

    @property
    def artifact_name(self) -> str:
        return self.name or f"ov_{self.weights}"

    def produces(self) -> list[str]:
        return [self.artifact_name]


def sliding_window(config: dict[str, Any]) -> Optional[int]:
    """The attention window of a model whose layers (some or all) attend to a window shorter
    than its context; None when none does (Qwen2's window is off unless use_sliding_window)."""
    window, context = config.get("sliding_window"), config.get("max_position_embeddings")
    if not window or config.get("use_sliding_window") is False or (context and window >= context):
        return None
    return int(window)


def _attention_backend(cfg: OVGenaiConfig, config: dict[str, Any]) -> tuple[Optional[str], str]:
    """Measured with OpenVINO GenAI 2026.4: its paged-attention backend (LLMPipeline's default
    on this CPU) drops the IR's sliding-window mask. A tiny Gemma-3 (window 16) generated other
    tokens than PyTorch from the first one on through it, the same tokens through SDPA."""
    if cfg.attention_backend != "auto":
        return cfg.attention_backend, f"attention_backend {cfg.attention_backend!r} set in the recipe"
    window = sliding_window(config)
    if window:
        return "sdpa", (f"sliding window of {window} tokens: LLMPipeline's paged attention ignores it, "
                        "so the IR's own attention (SDPA) runs")
    return None, "LLMPipeline's default"


def _precision(cfg: OVGenaiConfig) -> str:
    """int4 when every int4-eligible layer is (embeddings and lm_head at backup_mode, as the
    builder's int4 leaves them too); mixed when ratio leaves some at the backup precision."""
    if cfg.weights.startswith("int4"):
        return "int4" if cfg.ratio == 1.0 else "mixed"
    return cfg.weights.split("_")[0]


def _dataset(state: ModelState, cfg: OVGenaiConfig, nncf: Any) -> tuple[Any, int]:
    """Whole-prompt feeds of the stateful model (an empty cache: the state starts at zero)."""
    calib = state.calibration
    if calib is None or len(calib) == 0:
        what = cfg.data_aware or [cfg.sensitivity_metric]
        raise DataError(f"target.openvino-genai: {', '.join(map(str, what))} needs calibration text: set "
                        "data.calibration in the recipe, e.g. {builtin: pydoc_topics, split: train, samples: 32}")
    n = cfg.subset_size or len(calib)
    if n > len(calib):
        raise RecipeError(f"subset_size: {n} is more than the {len(calib)} calibration windows; lower it or raise "
                          "data.calibration.samples")

    def feed(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(sample["input_ids"], dtype=np.int64).reshape(1, -1)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)}

    return nncf.Dataset(calib.samples[:n], feed), n


def _compress(model: Any, state: ModelState, cfg: OVGenaiConfig) -> tuple[Any, dict[str, Any]]:
    nncf = require("nncf", extra="openvino")
    nncf.set_log_level(logging.ERROR)
    kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode(cfg.weights)}
    n = 0
    if cfg.weights.startswith("int4"):
        kwargs.update(group_size=cfg.group_size, ratio=cfg.ratio, all_layers=cfg.all_layers,
                      backup_mode=nncf.BackupMode(cfg.backup_mode))
        if cfg.sensitivity_metric:
            kwargs["sensitivity_metric"] = nncf.SensitivityMetric(cfg.sensitivity_metric)
        if cfg.needs_data:
            dataset, n = _dataset(state, cfg, nncf)
            kwargs.update(dataset=dataset, subset_size=n, awq="awq" in cfg.data_aware,
                          scale_estimation="scale_estimation" in cfg.data_aware, gptq="gptq" in cfg.data_aware)
    # NNCF draws its progress bars and bit-width table on stdout; keep stdout for edgekit's table
    with contextlib.redirect_stdout(io.StringIO()):
        compressed = nncf.compress_weights(model, **kwargs)
    return compressed, {"mode": cfg.weights, "calibration_windows": n, **_weight_types(compressed)}


def _weight_types(model: Any) -> dict[str, Any]:
    """Bytes and matrix counts of the integer weights, by element type: what NNCF actually chose."""
    nbytes: dict[str, int] = {}
    matrices: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            t = op.get_output_element_type(0).get_type_name()
            if t in ("u4", "i4", "u8", "i8"):
                nbytes[t] = nbytes.get(t, 0) + int(op.get_byte_size())
                matrices[t] = matrices.get(t, 0) + 1
    return {"weight_bytes_by_type": nbytes, "weight_matrices_by_type": matrices}


def _place_fixed(model: Any, fixed: Any, cfg: OVGenaiConfig) -> tuple[Any, dict[str, Any]]:
    """quantize.weight_only's integers into the matched MatMuls; NNCF compresses only what it
    left (embeddings, lm_head) at backup_mode, those MatMuls in its ignored scope."""
    from edgekit.export import ov_weights
    from edgekit.quantize.lm_layers import RowIndex

    where = ov_weights.matches(model, RowIndex(fixed.layers, fixed.floats))
    found = {n for names in where.values() for n in names}
    missing = sorted(set(fixed.layers) - found)
    if missing:
        raise StageError(f"{cfg.artifact_name}: OpenVINO's conversion has no weight equal to quantized layer "
                         f"{missing[0]} ({len(missing)} of {len(fixed.layers)} missing)")
    rest = _rest_mode(cfg)
    if rest != "none":
        nncf = require("nncf", extra="openvino")
        nncf.set_log_level(logging.ERROR)
        kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode(rest)}
        if cfg.all_layers:
            # round-to-nearest int4 on the layers the data-aware quantizer left: measured on
            # SmolLM2-135M (docs/llm.md#ov-head4), the bytes a decode step reads drop by a sixth
            kwargs.update(group_size=cfg.group_size, ratio=1.0, all_layers=True,
                          backup_mode=nncf.BackupMode(cfg.backup_mode))
        with contextlib.redirect_stdout(io.StringIO()):
            model = nncf.compress_weights(model, **kwargs,
                                          ignored_scope=nncf.IgnoredScope(names=sorted(where), validate=False))
    placed = ov_weights.place(model, where, fixed.layers)
    return model, {"weights_from": fixed.tool, "placed_matmuls": placed,
                   "integers_read_back_equal": ov_weights.read_back(model, fixed.layers),
                   "embeddings_and_lm_head": rest + (f" group {cfg.group_size}" if cfg.all_layers else ""),
                   **_weight_types(model)}


def _rest_mode(cfg: OVGenaiConfig) -> str:
    """What NNCF does to the embeddings and lm_head after quantize.weight_only: the int4 mode of
    `weights` with all_layers, else backup_mode."""
    return cfg.weights if cfg.all_layers else cfg.backup_mode


class TargetOVGenai(Stage):
    kind = "target.openvino-genai"
    Config = OVGenaiConfig

    def apply(self, state: ModelState, cfg: OVGenaiConfig) -> tuple[ModelState, StageRecord]:
        lm = causal_lm_of(state, self.kind)
        require("openvino", extra="openvino")
        require("openvino_tokenizers", extra="llm", why="the tokenizer IRs LLMPipeline reads")
        from edgekit.export import ov_stateful

        config = json.loads((lm.directory / "config.json").read_text(encoding="utf-8"))
        fixed = state.weight_only if cfg.weights not in ("fp32", "fp16") else None
        if cfg.weights.startswith("int4") and cfg.group_size != -1 and (fixed is None or cfg.all_layers):
            check_block(cfg.group_size, config, "group_size", GROUP_SIZES, hidden_only=fixed is not None)
        out = state.workdir / cfg.artifact_name
        out.mkdir(parents=True)
        tick = state.progress(f"{cfg.artifact_name}: converting {lm.family} to a stateful OpenVINO IR", 1)
        t0 = time.perf_counter()
        try:
            model = ov_stateful.convert((lm if fixed is None else dataclasses.replace(lm, directory=fixed.directory)).torch_model())
        except Exception as exc:  # tracing raises whatever the model's code raises
            raise StageError(f"{self.kind}: OpenVINO's conversion refused {lm.family} ({lm.architecture}): "
                             f"{first_line(exc)}") from exc
        measured: dict[str, Any] = {"openvino_version": version_of("openvino"), "family": lm.family,
                                    "convert_s": round(time.perf_counter() - t0, 2)}
        tick(1)
        if fixed is not None:
            tick = state.progress(f"{cfg.artifact_name}: placing {fixed.tool}'s integers in the IR "
                                  f"(embeddings and lm_head: NNCF {_rest_mode(cfg)})", 1)
            t1 = time.perf_counter()
            model, info = _place_fixed(model, fixed, cfg)
            measured.update(info, nncf=version_of("nncf"), compress_s=round(time.perf_counter() - t1, 2))
            tick(1)
        elif cfg.weights not in ("fp32", "fp16"):
            what = f"{cfg.weights}, group {cfg.group_size}" if cfg.weights.startswith("int4") else cfg.weights
            if cfg.data_aware:
                what += f", {' + '.join(cfg.data_aware)} on calibration text (NNCF shows no progress; minutes on a real model)"
            tick = state.progress(f"{cfg.artifact_name}: compressing weights with NNCF ({what})", 1)
            t1 = time.perf_counter()
            model, info = _compress(model, state, cfg)
            measured.update(info, nncf=version_of("nncf"), compress_s=round(time.perf_counter() - t1, 2))
            tick(1)
        tick = state.progress(f"{cfg.artifact_name}: saving the IR and converting the tokenizer", 1)
        xml = out / ov_genai.MODEL
        ov_save.save(model, xml, compress_to_fp16=cfg.weights == "fp16")
        del model
        ov_stateful.write_tokenizers(lm.tokenizer(), out)
        for name in COPIED:
            if (lm.directory / name).is_file():
                shutil.copy2(lm.directory / name, out / name)
        tick(1)
        backend, measured["attention_backend_reason"] = _attention_backend(cfg, config)
        options = {k: v for k, v in (("precision", cfg.inference_precision), ("kv_cache", cfg.kv_cache_precision),
                                     ("attention_backend", backend or "auto")) if v != "auto"}
        files = sorted(p for p in out.rglob("*") if p.is_file() and p != xml)
        state.add(Artifact(cfg.artifact_name, xml, ov_genai.FORMAT, fixed.precision if fixed else _precision(cfg), self.kind,
                           extra_files=tuple(files), options={ov_genai.NAME: options} if options else {}))
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.artifact_name],
                                  measured=measured)
