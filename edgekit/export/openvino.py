"""target.openvino: the float model to an OpenVINO IR (.xml + .bin), optionally compressed by NNCF.

Why NNCF rather than handing OpenVINO an ONNX Runtime QDQ graph: OpenVINO reading the all-ops
QDQ ONNX of MiniLM collapses (cosine near 0; docs/quantization.md), while `nncf.quantize` with the
transformer scheme (SmoothQuant, softmax / layer norm / residual adds kept in float) keeps 0.996.
NNCF is OpenVINO's own compression library, so edgekit only chooses its settings, resolves the
recipe's node patterns, and records what it did."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from edgekit.core.backends import require, version_of
from edgekit.core.patterns import check_patterns
from edgekit.errors import DataError, RecipeError
from edgekit.export import ov_save
from edgekit.runtimes import ov as ov_runtime
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState

# settings that only one kind of compression reads; setting them for another precision is an error
ONLY_FOR = {
    "preset": ("int8",),
    "model_type": ("int8",),
    "smooth_quant_alpha": ("int8",),
    "fast_bias_correction": ("int8",),
    "overflow_fix": ("int8",),
    "weight_mode": ("int8_weights", "int4"),
    "group_size": ("int4",),
    "ratio": ("int4",),
    "data_aware": ("int4",),
    "subset_size": ("int8", "int4"),
    "exclude": ("int8", "int8_weights", "int4"),
}
# ops whose presence marks an attention model, for which NNCF's transformer scheme is the safe one
ATTENTION_OPS = {"Softmax", "ScaledDotProductAttention"}


class OpenVINOConfig(StageConfig):
    kind: Literal["target.openvino"]
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="artifact name; ov_<precision> if unset")
    source: Literal["onnx", "torch"] = Field(
        "onnx", description="convert the exported float ONNX (parity-checked, fast) or the torch module"
    )
    precision: Literal["fp32", "int8", "int8_weights", "int4"] = "int8"
    inference_precision: Literal["auto", "f32", "bf16"] = Field(
        "auto", description="OpenVINO's INFERENCE_PRECISION_HINT at run time; auto = the device default (bf16 on AMX)"
    )
    # precision int8: nncf.quantize
    preset: Optional[Literal["performance", "mixed"]] = None
    model_type: Literal["auto", "transformer", "generic"] = "auto"
    smooth_quant_alpha: Union[float, Literal["off"], None] = Field(
        None, description="SmoothQuant alpha for MatMuls; NNCF's default (0.95 for transformers) if unset")
    fast_bias_correction: bool = True
    # NNCF's overflow fix (7-bit weights) against int16 saturation on x86 without VNNI. auto =
    # first_layer (NNCF's default): on MiniLM it kept 0.9969 native / 0.9947 emulated x86-avx2,
    # where enable (every layer) lost more on both (0.9933); benchmarks/cpu_classes.py
    overflow_fix: Literal["auto", "enable", "first_layer", "disable"] = "auto"
    subset_size: Optional[int] = Field(None, ge=1, description="calibration samples to use; all if unset")
    # precision int8_weights / int4: nncf.compress_weights
    weight_mode: Literal["sym", "asym"] = "asym"
    group_size: int = Field(32, description="int4 group size along the input channels; -1 = per channel")
    ratio: float = Field(1.0, gt=0.0, le=1.0, description="share of the linear layers in int4, the rest int8")
    data_aware: list[Literal["awq", "scale_estimation", "gptq"]] = []
    exclude: list[str] = []

    _patterns = field_validator("exclude")(classmethod(lambda cls, v: check_patterns(v)))

    @field_validator("smooth_quant_alpha")
    @classmethod
    def _alpha(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError(f"smooth_quant_alpha must be in [0, 1] or 'off', got {v}")
        return v

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v != -1 and (v < 8 or v & (v - 1)):
            raise ValueError(f"group_size must be -1 (per channel) or a power of two >= 8, got {v}")
        return v

    @model_validator(mode="after")
    def _settings_fit_precision(self) -> "OpenVINOConfig":
        for field in sorted(self.model_fields_set):
            allowed = ONLY_FOR.get(field)
            if allowed and self.precision not in allowed:
                raise ValueError(
                    f"{field} applies only to precision {' / '.join(allowed)}, not {self.precision}"
                )
        if "gptq" in self.data_aware and "awq" in self.data_aware:
            raise ValueError("data_aware: gptq and awq cannot be combined; pick one")
        if self.precision == "int4" and "subset_size" in self.model_fields_set and not self.data_aware:
            raise ValueError("subset_size applies to int4 only with data_aware methods; none is set")
        return self

    def saturation_problem(self, classes: list[str]) -> Optional[str]:
        """Why this config saturates on one of `classes`, or None (checked at validate time)."""
        from edgekit.runtimes.cpu_classes import SATURATING

        bad = [c for c in classes if c in SATURATING]
        if self.precision == "int8" and self.overflow_fix == "disable" and bad:
            return (f"overflow_fix {self.overflow_fix!r} leaves full-range int8 weights that saturate int16 on "
                    f"{', '.join(bad)}; allowed there: auto, first_layer, enable")
        return None

    @property
    def artifact_name(self) -> str:
        return self.name or f"ov_{self.precision}"

    def produces(self) -> list[str]:
        return [self.artifact_name]


def _convert(state: ModelState, cfg: OpenVINOConfig, ov: Any) -> Any:
    if cfg.source == "torch":
        if state.torch_model is None:
            raise RecipeError("source: 'torch' needs a torch model; this model is ONNX (use source: onnx)")
        import copy

        import torch

        example = tuple(torch.from_numpy(state.example[n]) for n in state.input_names)
        # tracing may patch the module (Hugging Face models); the pipeline still needs it as the reference
        return ov.convert_model(copy.deepcopy(state.torch_model), example_input=example)
    if state.onnx_path is None:
        raise RecipeError("source: 'onnx' needs the float ONNX graph: put export.onnx before target.openvino")
    return ov.convert_model(str(state.onnx_path))


def _op_names(model: Any) -> list[tuple[str, str]]:
    return [(op.get_friendly_name(), op.get_type_name()) for op in model.get_ops()]


def _dataset(state: ModelState, cfg: OpenVINOConfig, nncf: Any, needed_by: str) -> tuple[Any, int]:
    calib = state.calibration
    if calib is None or len(calib) == 0:
        raise DataError(f"target.openvino: {needed_by} needs calibration data: set data.calibration in the recipe")
    n = cfg.subset_size or len(calib)
    if n > len(calib):
        raise RecipeError(
            f"subset_size: {n} is more than the {len(calib)} calibration samples; "
            f"lower it or raise data.calibration.samples"
        )
    order = list(state.input_names)
    # positional feeds: the converted model's input names can differ from the recipe's (torch source)
    return nncf.Dataset(calib.samples[:n], lambda feeds: [feeds[k] for k in order]), n


def _ignored(cfg: OpenVINOConfig, model: Any, nncf: Any) -> tuple[Any, list[str]]:
    from edgekit.quantize.nodes import nodes_matching

    names = nodes_matching(cfg.exclude, _op_names(model), "exclude") if cfg.exclude else []
    return (nncf.IgnoredScope(names=names) if names else None), names


def _quantize_int8(model: Any, state: ModelState, cfg: OpenVINOConfig, nncf: Any) -> tuple[Any, dict[str, Any]]:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    ops = {t for _, t in _op_names(model)}
    transformer = cfg.model_type == "transformer" or (cfg.model_type == "auto" and bool(ops & ATTENTION_OPS))
    dataset, n = _dataset(state, cfg, nncf, "precision int8")
    ignored, names = _ignored(cfg, model, nncf)
    from nncf.quantization.advanced_parameters import OverflowFix

    from edgekit.runtimes.cpu_classes import SATURATING, X86_CLASSES

    classes = state.recipe.deploy.classes() if state.recipe is not None else list(X86_CLASSES)
    bad = [c for c in classes if c in SATURATING]
    fix = cfg.overflow_fix if cfg.overflow_fix != "auto" else "first_layer"
    advanced_kw: dict[str, Any] = {"overflow_fix": {"enable": OverflowFix.ENABLE, "first_layer": OverflowFix.FIRST_LAYER,
                                                    "disable": OverflowFix.DISABLE}[fix]}
    if cfg.smooth_quant_alpha is not None:
        alpha = -1.0 if cfg.smooth_quant_alpha == "off" else float(cfg.smooth_quant_alpha)  # NNCF: -1 = off
        advanced_kw["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=alpha)
    advanced = AdvancedQuantizationParameters(**advanced_kw)
    quantized = nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset(cfg.preset) if cfg.preset else None,
        subset_size=n,
        fast_bias_correction=cfg.fast_bias_correction,
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        ignored_scope=ignored,
        advanced_parameters=advanced,
    )
    fq = sum(1 for _, t in _op_names(quantized) if t == "FakeQuantize")
    return quantized, {
        "model_type": "transformer" if transformer else "generic",
        "model_type_reason": cfg.model_type if cfg.model_type != "auto" else
        (f"auto: found {sorted(ops & ATTENTION_OPS)}" if transformer else "auto: no attention ops"),
        "calibration_samples": n,
        "excluded_nodes": names,
        "fake_quantize_nodes": fq,
        "overflow_fix": fix,
        "overflow_fix_reason": (f"overflow_fix {cfg.overflow_fix!r} set in the recipe" if cfg.overflow_fix != "auto" else
                                f"deploy.cpus includes {', '.join(bad)}: NNCF's first-layer fix, which measured closer "
                                "to fp32 there than the fix on every layer (benchmarks/cpu_classes.py)" if bad else
                                f"no class in deploy.cpus ({', '.join(classes)}) saturates: NNCF's default"),
        "deploy_cpus": classes,
    }


def _compress_weights(model: Any, state: ModelState, cfg: OpenVINOConfig, nncf: Any) -> tuple[Any, dict[str, Any]]:
    bits = "4" if cfg.precision == "int4" else "8"
    mode = nncf.CompressWeightsMode(f"int{bits}_{cfg.weight_mode}")
    kwargs: dict[str, Any] = {}
    n = 0
    if cfg.precision == "int4":
        kwargs.update(group_size=cfg.group_size, ratio=cfg.ratio)
        if cfg.data_aware:
            dataset, n = _dataset(state, cfg, nncf, f"data_aware {cfg.data_aware}")
            kwargs.update(dataset=dataset, subset_size=n, awq="awq" in cfg.data_aware,
                          scale_estimation="scale_estimation" in cfg.data_aware, gptq="gptq" in cfg.data_aware)
    ignored, names = _ignored(cfg, model, nncf)
    compressed = nncf.compress_weights(model, mode=mode, ignored_scope=ignored, **kwargs)
    weights: dict[str, int] = {}
    for op in compressed.get_ops():
        if op.get_type_name() == "Constant":
            t = op.get_output_element_type(0).get_type_name()
            if t in ("u4", "i4", "u8", "i8"):
                weights[t] = weights.get(t, 0) + int(op.get_byte_size())
    return compressed, {
        "mode": mode.value,
        "calibration_samples": n,
        "excluded_nodes": names,
        "weight_bytes_by_type": weights,
    }


class TargetOpenVINO(Stage):
    kind = "target.openvino"
    Config = OpenVINOConfig

    def apply(self, state: ModelState, cfg: OpenVINOConfig) -> tuple[ModelState, StageRecord]:
        ov = require("openvino", extra="openvino")
        t0 = time.perf_counter()
        model = _convert(state, cfg, ov)
        convert_s = time.perf_counter() - t0
        measured: dict[str, Any] = {"openvino_version": version_of("openvino"), "convert_s": round(convert_s, 3)}
        if cfg.precision != "fp32":
            nncf = require("nncf", extra="openvino")
            nncf.set_log_level(logging.ERROR)
            t1 = time.perf_counter()
            # NNCF draws its progress bars on stdout; keep stdout for edgekit's own table
            with contextlib.redirect_stdout(io.StringIO()):
                if cfg.precision == "int8":
                    model, info = _quantize_int8(model, state, cfg, nncf)
                else:
                    model, info = _compress_weights(model, state, cfg, nncf)
            measured.update(info, nncf=version_of("nncf"), compress_s=round(time.perf_counter() - t1, 3))
        xml = state.workdir / f"{cfg.artifact_name}.xml"
        # keep the weights as computed: fp16 storage would silently change an fp32 artifact's numbers
        ov_save.save(model, xml, compress_to_fp16=False)
        options = {} if cfg.inference_precision == "auto" else {ov_runtime.NAME: {"precision": cfg.inference_precision}}
        state.add(Artifact(
            cfg.artifact_name, xml, ov_runtime.FORMAT, {"int8_weights": "int8"}.get(cfg.precision, cfg.precision),
            self.kind, extra_files=(xml.with_suffix(".bin"),), options=options,
        ))
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.artifact_name],
                                  measured=measured)
