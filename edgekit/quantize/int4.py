"""quantize.int4: weight-only INT4 of MatMul weights on ONNX, through onnxruntime's
MatMulNBitsQuantizer (block-wise scales, `group_size` weights per block).

Methods: `rtn` (round to nearest, onnxruntime's default block quantizer; it alone can also pack
the Gather embedding tables, `embeddings: true`, which hold half of a BERT-size model), `gptq`
(data-aware: uses the calibration set to correct the rounding error column by column) and `hqq`
(half-quadratic, no data). Defaults are asymmetric groups of 32: on all-MiniLM-L6-v2 symmetric
g32 gives cosine 0.961, g128 0.942, asymmetric g32 0.974, asymmetric g16 0.981. The artifact uses the
com.microsoft MatMulNBits contrib op, which only ONNX Runtime runs; for OpenVINO use
target.openvino's INT4 weight compression instead (the recipe validator refuses the mix)."""

from __future__ import annotations

import contextlib
import io
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from edgekit.core.backends import require
from edgekit.core.patterns import check_patterns
from edgekit.errors import DataError, StageError
from edgekit.quantize.graph import Consumers, privatize
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class Int4Config(StageConfig):
    kind: Literal["quantize.int4"]
    name: str = Field("int4", pattern=r"^[A-Za-z0-9_-]+$")
    method: Literal["rtn", "gptq", "hqq"] = "rtn"
    group_size: Literal[16, 32, 64, 128, 256] = 32
    symmetric: bool = False
    embeddings: bool = Field(False, description="also pack Gather embedding tables (method rtn)")
    accuracy_level: Optional[Literal[0, 1, 2, 3, 4]] = Field(
        None, description="MatMulNBits compute type: 4 = int8 activations (fastest on x86), 1 = fp32")
    samples: int = Field(32, ge=1, description="calibration samples for gptq")
    exclude: list[str] = []

    _patterns = field_validator("exclude")(classmethod(lambda cls, v: check_patterns(v)))

    @model_validator(mode="after")
    def _embeddings_need_rtn(self) -> "Int4Config":
        if self.embeddings and self.method != "rtn":
            raise ValueError(f"embeddings: true needs method rtn (onnxruntime packs Gather tables only "
                             f"with its default quantizer); got method {self.method!r}")
        return self


class _Reader:
    """The calibration samples as onnxruntime's CalibrationDataReader protocol (GPTQ reads it)."""

    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples
        self.rewind()

    def get_next(self) -> Optional[dict]:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.samples)

    def __iter__(self):  # GPTQ iterates a deep copy of the reader
        return iter(self.samples)


def gemm_to_matmul(model: object, consumers: Optional[Consumers] = None) -> int:
    """Rewrite Gemm(A, B const, C) with alpha = beta = 1 and no transA as MatMul(A, B') + C, in
    place; returns how many. MatMulNBits replaces only MatMul, and onnxslim fuses every Linear
    layer into Gemm, so without this a transformer would get no INT4 weight at all. A B that
    must be transposed and is read elsewhere too (a tied embedding) is transposed in a copy."""
    import onnx
    from onnx import numpy_helper

    g = model.graph  # type: ignore[attr-defined]
    c = consumers or Consumers(model)
    inits = c.inits
    nodes, count = [], 0
    for n in g.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        if not (n.op_type == "Gemm" and n.input[1] in inits and not a.get("transA", 0)
                and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0):
            nodes.append(n)
            continue
        if a.get("transB", 0):
            init = c.private_initializer(n, 1)
            w = numpy_helper.to_array(init).T.copy()
            init.CopyFrom(numpy_helper.from_array(w, init.name))
        if len(n.input) > 2 and n.input[2]:
            mm = f"{n.output[0]}_matmul"
            nodes.append(onnx.helper.make_node("MatMul", [n.input[0], n.input[1]], [mm], name=f"{n.name}_MatMul"))
            nodes.append(onnx.helper.make_node("Add", [mm, n.input[2]], list(n.output), name=f"{n.name}_Add"))
        else:
            nodes.append(onnx.helper.make_node("MatMul", [n.input[0], n.input[1]], list(n.output), name=n.name))
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    c.refresh()
    return count


class Int4(Stage):
    kind = "quantize.int4"
    Config = Int4Config

    def apply(self, state: ModelState, cfg: Int4Config) -> tuple[ModelState, StageRecord]:
        onnx = require("onnx", extra="onnx")
        nb = require("onnxruntime.quantization.matmul_nbits_quantizer", extra="onnx")
        from edgekit.quantize.nodes import node_names, nodes_matching

        model = onnx.load(str(state.onnx_path))
        consumers = Consumers(model)
        rewritten = gemm_to_matmul(model, consumers)
        # onnxruntime names a packed weight after its source: two nodes reading one table would
        # get two different packings under one name
        privatize(model, {"MatMul": 1, "Gather": 0} if cfg.embeddings else {"MatMul": 1}, consumers)
        excluded = nodes_matching(cfg.exclude, [(n.name, n.op_type) for n in model.graph.node], "exclude")
        matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
        algo = None
        n = 0
        if cfg.method == "gptq":
            if state.calibration is None:
                raise DataError(f"{self.kind}: method gptq needs calibration data: set data.calibration")
            n = min(cfg.samples, len(state.calibration))
            algo = nb.GPTQWeightOnlyQuantConfig(calibration_data_reader=_Reader(state.calibration.samples[:n]),
                                                block_size=cfg.group_size)
        elif cfg.method == "hqq":
            algo = nb.HQQWeightOnlyQuantConfig(block_size=cfg.group_size, bits=4)
        op_types = ("MatMul", "Gather") if cfg.embeddings else ("MatMul",)
        quantizer = nb.MatMulNBitsQuantizer(
            model, bits=4, block_size=cfg.group_size, is_symmetric=cfg.symmetric,
            accuracy_level=cfg.accuracy_level, nodes_to_exclude=excluded, algo_config=algo,
            op_types_to_quantize=op_types, quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        with contextlib.redirect_stdout(io.StringIO()):
            quantizer.process()
        out = state.workdir / f"{cfg.name}.onnx"
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
        ops = [op for _, op in node_names(out)]
        packed = ops.count("MatMulNBits")
        if packed + ops.count("GatherBlockQuantized") == 0:
            raise StageError(
                f"{self.kind}: no weight was packed to INT4 ({len(matmuls)} MatMul nodes, "
                f"{len(set(matmuls) & set(excluded))} of them excluded; "
                "a MatMul is packed only when its weight is a constant 2-D initializer whose input dimension is "
                f"at least group_size {cfg.group_size}); the artifact would be float labelled int4")
        state.add(Artifact(cfg.name, out, "onnx", "int4", self.kind))
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.name],
                                  measured={"matmulnbits_nodes": packed, "gather_quantized_nodes": ops.count("GatherBlockQuantized"), "gemm_rewritten": rewritten, "excluded_nodes": excluded,
                                            "calibration_samples": n})
