"""quantize.int8: static post-training INT8 of the float ONNX graph, through
onnxruntime.quantization (QDQ format, calibrated activation ranges).

Defaults follow the whitepaper scheme (per-channel symmetric int8 weights, per-tensor
activations) with uint8 activations: on x86 ONNX Runtime runs U8S8 QDQ 2-3x faster than its
S8S8 default, which is slower than fp32 here (../shared/FACTS.md)."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekit.backends import require
from edgekit.errors import DataError
from edgekit.recipe import check_patterns
from edgekit.stage import Stage, StageConfig, StageRecord
from edgekit.state import Artifact, ModelState


class WeightsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    symmetric: bool = True
    dtype: Literal["int8", "uint8"] = "int8"


class ActivationsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    granularity: Literal["per_tensor"] = "per_tensor"
    dtype: Literal["uint8", "int8"] = "uint8"
    symmetric: bool = False
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, le=100.0)


class StaticInt8Config(StageConfig):
    kind: Literal["quantize.int8"]
    name: str = Field("int8", pattern=r"^[A-Za-z0-9_-]+$")
    format: Literal["qdq", "qoperator"] = "qdq"
    weights: WeightsConfig = WeightsConfig()
    activations: ActivationsConfig = ActivationsConfig()
    exclude: list[str] = []
    op_types: Optional[list[str]] = None
    samples: Optional[int] = Field(None, ge=1)

    _patterns = field_validator("exclude")(classmethod(lambda cls, v: check_patterns(v)))


class _Reader:
    """CalibrationDataReader over the calibration set, ticking a progress bar per sample."""

    def __init__(self, samples: list[dict[str, Any]], tick: Any) -> None:
        self._it = iter(samples)
        self._tick = tick

    def get_next(self) -> Optional[dict[str, Any]]:
        item = next(self._it, None)
        if item is not None:
            self._tick(1)
        return item


def quant_types(cfg: StaticInt8Config) -> tuple[Any, Any]:
    q = require("onnxruntime.quantization", extra="onnx")
    wt = q.QuantType.QInt8 if cfg.weights.dtype == "int8" else q.QuantType.QUInt8
    at = q.QuantType.QUInt8 if cfg.activations.dtype == "uint8" else q.QuantType.QInt8
    return wt, at


class StaticInt8(Stage):
    kind = "quantize.int8"
    Config = StaticInt8Config

    def apply(self, state: ModelState, cfg: StaticInt8Config) -> tuple[ModelState, StageRecord]:
        q = require("onnxruntime.quantization", extra="onnx")
        from edgekit.quantize.nodes import node_names, resolve

        if state.calibration is None or len(state.calibration) == 0:
            raise DataError(f"{self.kind}: needs calibration data: set data.calibration in the recipe")
        samples = state.calibration.samples[: cfg.samples] if cfg.samples else state.calibration.samples
        prepared = state.workdir / f".{cfg.name}.pre.onnx"
        q.quant_pre_process(str(state.onnx_path), str(prepared), skip_symbolic_shape=True)
        nodes = node_names(prepared)
        excluded = resolve(cfg.exclude, nodes, "exclude")
        out = state.workdir / f"{cfg.name}.onnx"
        method = {
            "minmax": q.CalibrationMethod.MinMax,
            "percentile": q.CalibrationMethod.Percentile,
            "entropy": q.CalibrationMethod.Entropy,
        }[cfg.activations.calibration]
        wt, at = quant_types(cfg)
        extra = {
            "WeightSymmetric": cfg.weights.symmetric,
            "ActivationSymmetric": cfg.activations.symmetric,
        }
        if cfg.activations.calibration == "percentile":
            extra["CalibPercentile"] = cfg.activations.percentile
        tick = state.progress(f"calibrating {cfg.name}", len(samples))
        # onnxruntime's calibrators print their progress to stdout; keep stdout for our table
        with contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(
                str(prepared),
                str(out),
                _Reader(samples, tick),
                quant_format=q.QuantFormat.QDQ if cfg.format == "qdq" else q.QuantFormat.QOperator,
                op_types_to_quantize=cfg.op_types,
                per_channel=cfg.weights.granularity == "per_channel",
                activation_type=at,
                weight_type=wt,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                extra_options=extra,
            )
        prepared.unlink(missing_ok=True)
        for leftover in state.workdir.glob("augmented_model*.onnx"):
            leftover.unlink()
        quantized = sum(1 for _, op in node_names(out) if op == "QuantizeLinear")
        state.add(Artifact(cfg.name, out, "onnx", "int8", self.kind, ("onnxruntime", "openvino")))
        return state, StageRecord(
            kind=self.kind,
            settings=cfg.model_dump(),
            outputs=[cfg.name],
            measured={
                "calibration_samples": len(samples),
                "excluded_nodes": excluded,
                "quantize_linear_nodes": quantized,
                "scheme": f"{'U' if at == q.QuantType.QUInt8 else 'S'}8{'S' if wt == q.QuantType.QInt8 else 'U'}8",
            },
        )
