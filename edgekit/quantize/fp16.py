"""quantize.fp16: cast the float graph to float16 with onnxruntime's own converter
(`onnxruntime.transformers.float16`; onnxconverter-common is not a dependency).

Inputs and outputs stay float32 by default (keep_io_types) so the artifact takes the same feeds
as the fp32 one; ops the converter knows to be unsafe in fp16 stay float32 (its block list),
plus any listed in `keep_float`. Both ONNX Runtime and OpenVINO run the result; on CPUs without
native fp16 arithmetic ONNX Runtime inserts casts, so it mainly halves size there."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edgekit.core.backends import require
from edgekit.core.patterns import check_patterns
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class Fp16Config(StageConfig):
    kind: Literal["quantize.fp16"]
    name: str = Field("fp16", pattern=r"^[A-Za-z0-9_-]+$")
    keep_io_types: bool = True
    keep_float: list[str] = Field([], description="node names or re: patterns kept float32")

    _patterns = field_validator("keep_float")(classmethod(lambda cls, v: check_patterns(v)))


class Fp16(Stage):
    kind = "quantize.fp16"
    Config = Fp16Config

    def apply(self, state: ModelState, cfg: Fp16Config) -> tuple[ModelState, StageRecord]:
        onnx = require("onnx", extra="onnx")
        f16 = require("onnxruntime.transformers.float16", extra="onnx")
        from edgekit.quantize.nodes import node_names, nodes_matching

        kept = nodes_matching(cfg.keep_float, node_names(state.onnx_path), "keep_float")
        model = f16.convert_float_to_float16(onnx.load(str(state.onnx_path)), keep_io_types=cfg.keep_io_types,
                                             node_block_list=kept or None)
        out = state.workdir / f"{cfg.name}.onnx"
        onnx.save(model, str(out))
        state.add(Artifact(cfg.name, out, "onnx", "fp16", self.kind))
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.name],
                                  measured={"kept_float_nodes": kept})
