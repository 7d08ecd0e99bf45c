"""quantize.dynamic: dynamic INT8 through onnxruntime's `quantize_dynamic` (int8 weights,
activation ranges computed per batch at run time, so no calibration data).

op_types default to MatMul/Gemm: dynamic INT8 on convolutions (ConvInteger) runs 6x slower than
fp32 on x86 (docs/quantization.md), so Conv must be asked for explicitly. DefaultTensorType
is set to FLOAT because on fused graphs quantize_dynamic otherwise stops in shape inference
with an opaque error. The artifact runs on onnxruntime only: OpenVINO has no DynamicQuantizeLinear
/ MatMulInteger path that runs these graphs as INT8."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from edgekit.core.backends import require
from edgekit.core.patterns import check_patterns
from edgekit.quantize.overflow import choose_overflow_fix, deploy_classes, saturation_problem
from edgekit.runtimes import ort
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class DynamicInt8Config(StageConfig):
    kind: Literal["quantize.dynamic"]
    name: str = Field("dynamic_int8", pattern=r"^[A-Za-z0-9_-]+$")
    op_types: list[str] = Field(["MatMul", "Gemm"], min_length=1)
    per_channel: bool = False
    weight_dtype: Literal["int8", "uint8"] = "int8"
    # int8 weights on CPUs whose kernels saturate (see edgekit.quantize.overflow)
    overflow_fix: Literal["auto", "reduce_range", "runtime", "none"] = "auto"
    exclude: list[str] = []

    _patterns = field_validator("exclude")(classmethod(lambda cls, v: check_patterns(v)))

    def saturation_problem(self, classes: list[str]) -> Optional[str]:
        return saturation_problem(self.overflow_fix, self.weight_dtype, classes, "weight_dtype")


class DynamicInt8(Stage):
    kind = "quantize.dynamic"
    Config = DynamicInt8Config

    def apply(self, state: ModelState, cfg: DynamicInt8Config) -> tuple[ModelState, StageRecord]:
        onnx = require("onnx", extra="onnx")
        q = require("onnxruntime.quantization", extra="onnx")
        from edgekit.quantize.nodes import node_names, nodes_matching

        excluded = nodes_matching(cfg.exclude, node_names(state.onnx_path), "exclude")
        out = state.workdir / f"{cfg.name}.onnx"
        overflow = choose_overflow_fix(cfg.overflow_fix, cfg.weight_dtype, deploy_classes(state),
                                       auto="reduce_range" if cfg.per_channel else "runtime")
        q.quantize_dynamic(
            str(state.onnx_path),
            str(out),
            op_types_to_quantize=cfg.op_types,
            per_channel=cfg.per_channel,
            weight_type=q.QuantType.QInt8 if cfg.weight_dtype == "int8" else q.QuantType.QUInt8,
            nodes_to_exclude=excluded,
            reduce_range=overflow.reduce_range,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        ops = [op for _, op in node_names(out)]
        options = {ort.NAME: overflow.runner_options} if overflow.runner_options else {}
        state.add(Artifact(cfg.name, out, "onnx", "int8", self.kind, options=options))
        return state, StageRecord(
            kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.name],
            measured={"excluded_nodes": excluded, **overflow.record(), "runtime_options": options,
                      "integer_nodes": sum(op in ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")
                                           for op in ops)},
        )
