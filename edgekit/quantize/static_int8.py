"""quantize.int8: static post-training INT8 of the float ONNX graph, through
onnxruntime.quantization (QDQ format) with ranges from edgekit's streaming calibrator.

Defaults follow the whitepaper scheme (per-channel symmetric int8 weights, per-tensor
activations) with uint8 activations: on x86 ONNX Runtime runs U8S8 QDQ 2-3x faster than its
S8S8 default, which is slower than fp32 there (docs/quantization.md).

Presets exist because quantizing everything collapses transformers (MiniLM cosine about 0.35;
docs/quantization.md): the `transformer` preset quantizes only the inputs of MatMul/Gemm with a constant
weight and leaves their outputs float, so softmax, layer norm, residual adds, the attention-mask
path, the activation x activation attention products and the residual stream (whose outlier
channels a per-tensor scale cannot hold) stay float unless `op_types` asks for them. Measured on
all-MiniLM-L6-v2: quantizing those outputs too gives cosine 0.95, leaving them float 0.993.
ONNX Runtime's `MatMulConstBOnly` option keeps activation x activation MatMuls float only in its
QOperator format; its QDQ quantizer ignores it (onnxruntime 1.32) and quantizes the softmax
output and q/k/v, so the preset names those MatMuls in `nodes_to_exclude` itself. On the digits
ViT with entropy calibration a quantized softmax output is clipped to a third of its range
(docs/quantization.md#transformers).

The overflow fix for CPUs whose int8 kernels saturate (x86-avx2) is chosen for the recipe's
deploy.cpus by edgekit.quantize.overflow."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from edgekit.core.backends import require
from edgekit.core.patterns import check_patterns
from edgekit.core.strict import Strict
from edgekit.errors import DataError
from edgekit.quantize.overflow import (AUTO_FIX, DW8, OverflowChoice, choose_overflow_fix, deploy_classes,
                                       saturation_problem)
from edgekit.runtimes import ort
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState

TRANSFORMER_OPS = ["MatMul", "Gemm"]
WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# op types whose presence marks a graph as a transformer for `preset: auto`
TRANSFORMER_MARKERS = {"Softmax", "LayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization"}


class WeightsConfig(Strict):
    granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    symmetric: bool = True
    dtype: Literal["int8", "uint8"] = "int8"


class ActivationsConfig(Strict):
    granularity: Literal["per_tensor"] = "per_tensor"
    dtype: Literal["uint8", "int8"] = "uint8"
    symmetric: bool = False
    calibration: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, le=100.0)


class AccuracyAwareConfig(Strict):
    """Move the most sensitive nodes back to float until recipe.accuracy.max_drop holds."""

    enabled: bool = False
    max_trials: int = Field(8, ge=1)
    time_budget_s: float = Field(300.0, gt=0)
    samples: int = Field(64, ge=1, description="evaluation samples used for per-node sensitivity")


class SmoothQuantConfig(Strict):
    enabled: bool = False
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    samples: int = Field(32, ge=1, description="calibration samples for the per-channel maxima")


class StaticInt8Config(StageConfig):
    kind: Literal["quantize.int8"]
    name: str = Field("int8", pattern=r"^[A-Za-z0-9_-]+$")
    format: Literal["qdq", "qoperator"] = "qdq"
    preset: Literal["auto", "cnn", "transformer"] = "auto"
    weights: WeightsConfig = WeightsConfig()
    activations: ActivationsConfig = ActivationsConfig()
    exclude: list[str] = []
    op_types: Optional[list[str]] = Field(None, min_length=1)
    samples: Optional[int] = Field(None, ge=1)
    smoothquant: SmoothQuantConfig = SmoothQuantConfig()
    # int8 weights on CPUs whose kernels saturate (deploy.cpus with x86-avx2): 7-bit weights (but
    # 8 in depthwise convolutions: reduce_range_dw8), the ONNX Runtime session option, nothing
    # (refused unless deploy.accept_saturation), or auto
    overflow_fix: Literal["auto", "reduce_range", "reduce_range_dw8", "runtime", "none"] = "auto"
    overflow_margin: float = Field(0.10, ge=0.0, description="auto: how much slower than the fastest safe scheme "
                                                            "a more faithful one may be (0.1 = 10%)")
    sensitivity: bool = Field(False, description="write sensitivity.json (per-node SQNR) for this graph")
    accuracy_aware: AccuracyAwareConfig = AccuracyAwareConfig()

    _patterns = field_validator("exclude")(classmethod(lambda cls, v: check_patterns(v)))

    def scheme_measured(self, overflow: OverflowChoice) -> bool:
        """Whether the weight scheme is picked at run time by measuring the safe candidates
        (overflow_fix auto where a deploy class saturates full-range int8)."""
        return self.overflow_fix == "auto" and overflow.fix == AUTO_FIX and self.weights.dtype == "int8"

    def saturation_problem(self, classes: list[str]) -> Optional[str]:
        """Why this config saturates on one of `classes`, or None (checked at validate time)."""
        return saturation_problem(self.overflow_fix, self.weights.dtype, classes, "weights.dtype",
                                  "auto, reduce_range, reduce_range_dw8, runtime")


def quant_types(cfg: StaticInt8Config) -> tuple[Any, Any]:
    q = require("onnxruntime.quantization", extra="onnx")
    wt = q.QuantType.QInt8 if cfg.weights.dtype == "int8" else q.QuantType.QUInt8
    at = q.QuantType.QUInt8 if cfg.activations.dtype == "uint8" else q.QuantType.QInt8
    return wt, at


def preset_for(preset: str, nodes: list[tuple[str, str]]) -> str:
    if preset != "auto":
        return preset
    return "transformer" if any(op in TRANSFORMER_MARKERS for _, op in nodes) else "cnn"


@dataclass
class Plan:
    """Everything needed to (re)quantize the prepared graph with a different float set, so the
    sensitivity scan and the accuracy-aware search never recalibrate."""

    prepared: Path
    cache: Path
    op_types: Optional[list[str]]
    extra: dict[str, Any]
    cfg: StaticInt8Config
    overflow: OverflowChoice
    always_float: tuple[str, ...] = ()  # the transformer preset's activation x activation MatMuls

    @property
    def ort_options(self) -> dict[str, Any]:
        """Runner options for ONNX Runtime sessions of what this plan quantizes."""
        return self.overflow.runner_options

    def candidates(self) -> list[str]:
        """Nodes the sensitivity scan and the accuracy-aware search may move to float: with
        explicit op_types, every node of those types; otherwise the ones holding a constant
        weight (Conv, Gemm, MatMul...), since ops without weights only follow their inputs."""
        import onnx

        graph = onnx.load(str(self.prepared), load_external_data=False).graph
        inits = {i.name for i in graph.initializer}
        explicit = self.cfg.op_types is not None
        out = []
        for n in graph.node:
            if self.op_types is not None and n.op_type not in self.op_types:
                continue
            if explicit or (n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits):
                out.append(n.name)
        return out

    def quantize(self, out: Path, excluded: list[str]) -> None:
        q = require("onnxruntime.quantization", extra="onnx")
        wt, at = quant_types(self.cfg)
        extra = dict(self.extra)
        if self.overflow.reduce_range and self.overflow.full_range_weights:
            # onnxruntime reads a per-initializer reduce_range; per-channel overrides must name the axis
            keep = {"reduce_range": False, **({"axis": 0} if self.cfg.weights.granularity == "per_channel" else {})}
            extra["TensorQuantOverrides"] = {**extra.get("TensorQuantOverrides", {}),
                                             **{w: [dict(keep)] for w in self.overflow.full_range_weights}}
        with contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(
                str(self.prepared),
                str(out),
                None,
                calibration_cache_path=str(self.cache),
                quant_format=q.QuantFormat.QDQ if self.cfg.format == "qdq" else q.QuantFormat.QOperator,
                op_types_to_quantize=self.op_types,
                per_channel=self.cfg.weights.granularity == "per_channel",
                reduce_range=self.overflow.reduce_range,
                activation_type=at,
                weight_type=wt,
                nodes_to_exclude=list(dict.fromkeys([*excluded, *self.always_float])),
                calibrate_method=q.CalibrationMethod.MinMax,
                extra_options=extra,
            )


def activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes whose second input is computed from the model's inputs (attention's q x k
    and probabilities x v), not from constants alone."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    const = {i.name for i in graph.initializer}
    for n in graph.node:  # topological order: a node of constants only is a constant
        if all(not x or x in const for x in n.input):
            const.update(n.output)
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in const]


def plan(state: ModelState, cfg: StaticInt8Config, kind: str) -> tuple[Plan, dict[str, Any]]:
    """Pre-process, calibrate once (streaming histograms) and write the range cache."""
    import time

    q = require("onnxruntime.quantization", extra="onnx")
    from edgekit.quantize import calibrate
    from edgekit.quantize.nodes import node_names

    if state.calibration is None or len(state.calibration) == 0:
        raise DataError(f"{kind}: needs calibration data: set data.calibration in the recipe")
    samples = state.calibration.samples[: cfg.samples] if cfg.samples else state.calibration.samples
    prepared = state.workdir / f".{cfg.name}.pre.onnx"
    source = state.onnx_path
    info: dict[str, Any] = {}
    if cfg.smoothquant.enabled:
        from edgekit.quantize import smoothquant

        # on the float graph before pre-processing, where query/key/value still share one input
        source = state.workdir / f".{cfg.name}.smooth.onnx"
        n = min(cfg.smoothquant.samples, len(samples))
        info["smoothquant"] = smoothquant.apply(state.onnx_path, source, samples[:n], cfg.smoothquant.alpha,
                                                threads=state.threads, tick=state.progress("smoothquant", n))
    q.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    if source != state.onnx_path:
        source.unlink()
    nodes = node_names(prepared)
    preset = preset_for(cfg.preset, nodes)
    op_types = cfg.op_types or (TRANSFORMER_OPS if preset == "transformer" else None)
    extra: dict[str, Any] = {
        "WeightSymmetric": cfg.weights.symmetric,
        "ActivationSymmetric": cfg.activations.symmetric,
    }
    always_float: tuple[str, ...] = ()
    if preset == "transformer" and cfg.op_types is None:
        extra["MatMulConstBOnly"] = True
        extra["OpTypesToExcludeOutputQuantization"] = TRANSFORMER_OPS
        always_float = tuple(activation_matmuls(prepared))
    t0 = time.perf_counter()
    hists = calibrate.collect(prepared, samples, op_types, threads=state.threads,
                              tick=state.progress(f"calibrating {cfg.name}", len(samples)))
    rng = calibrate.ranges(hists, cfg.activations.calibration, cfg.activations.percentile)
    cache = state.workdir / f".{cfg.name}.ranges.json"
    calibrate.write_cache(rng, cache)
    info.update({
        "preset": preset,
        "op_types": op_types,
        "calibration_method": cfg.activations.calibration,
        "calibration_samples": len(samples),
        "calibrated_tensors": len(rng),
        "calibration_s": round(time.perf_counter() - t0, 3),
        "float_activation_matmuls": len(always_float),
    })
    overflow = choose_overflow_fix(cfg.overflow_fix, cfg.weights.dtype, deploy_classes(state))
    if overflow.fix == DW8:
        from edgekit.quantize.graph import depthwise_weights

        overflow.full_range_weights = depthwise_weights(prepared)
    return Plan(prepared, cache, op_types, extra, cfg, overflow, always_float), info


class StaticInt8(Stage):
    kind = "quantize.int8"
    Config = StaticInt8Config

    def apply(self, state: ModelState, cfg: StaticInt8Config) -> tuple[ModelState, StageRecord]:
        q = require("onnxruntime.quantization", extra="onnx")
        from edgekit.quantize.nodes import node_names, nodes_matching

        p, measured = plan(state, cfg, self.kind)
        out = state.workdir / f"{cfg.name}.onnx"
        nodes = node_names(p.prepared)
        excluded = nodes_matching(cfg.exclude, nodes, "exclude")
        search = cfg.sensitivity or cfg.accuracy_aware.enabled
        built = False
        if cfg.scheme_measured(p.overflow):
            from edgekit.quantize import scheme_choice

            schemes = scheme_choice.safe_schemes(p)
            tick = state.progress(f"choosing {cfg.name}'s INT8 scheme among {', '.join(schemes)} (fidelity and speed)",
                                  len(schemes) + 1)
            samples = state.calibration.samples[: cfg.samples] if cfg.samples else state.calibration.samples
            # without a search the chosen candidate is the artifact as it is
            keep = None if search else out
            p, found, built = scheme_choice.choose(p, state.onnx_path, samples, state.threads, tick,
                                                   cfg.overflow_margin, keep, tuple(excluded), schemes)
            measured.update(found)
        asked, cfg = cfg, p.cfg  # the record keeps the recipe's settings; the weights are the chosen scheme's
        candidates = [n for n in p.candidates() if n not in excluded]
        if search:
            from edgekit.quantize.search import sensitivity_then_search

            excluded, found = sensitivity_then_search(state, p, candidates, excluded, out, self.kind)
            measured.update(found)
        elif not built:
            p.quantize(out, excluded)
        for f in (p.prepared, p.cache):
            f.unlink(missing_ok=True)
        wt, at = quant_types(cfg)
        quantized = [n for n in candidates if n not in excluded]
        options = {ort.NAME: p.ort_options} if p.ort_options else {}
        state.add(Artifact(cfg.name, out, "onnx", "int8" if not excluded else "mixed", self.kind, options=options))
        measured.update({
            "excluded_nodes": excluded,
            "quantize_linear_nodes": sum(1 for _, op in node_names(out) if op == "QuantizeLinear"),
            "precision": {**{n: "int8" for n in quantized}, **{n: "float" for n in excluded}},
            "scheme": f"{'U' if at == q.QuantType.QUInt8 else 'S'}8{'S' if wt == q.QuantType.QInt8 else 'U'}8",
            **p.overflow.record(),
            "runtime_options": options,
        })
        return state, StageRecord(kind=self.kind, settings=asked.model_dump(), outputs=[cfg.name], measured=measured)
