"""target.npu: the float ONNX graph to an integer-only, static-shape QDQ graph for one NPU
profile, checked against that profile before it is written.

Steps: pin input shapes and apply the rewrites (edgekit.export.npu_rewrite: onnxruntime's QNN
pre-processing, then the hand-written ones); calibrate with edgekit's streaming calibrator (the
same ranges as quantize.int8: minmax / percentile / entropy / mse); quantize with onnxruntime's
`get_qnn_qdq_config` (16-bit activations where asked, fixed Sigmoid/Tanh ranges, MatMul inputs
converted so the HTP's type pairs hold, per-channel only on Conv) fed those ranges as a cache;
then the profile check. A graph with problems left is not written: the stage fails naming the
first problem and the count."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgekit.core.backends import require
from edgekit.errors import DataError, StageError
from edgekit.export.npu_rewrite import MASK_VALUE
from edgekit.runtimes.npu import qnn
from edgekit.runtimes.npu.profiles import PROFILES
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState

QTYPES = ("uint8", "int8", "uint16", "int16")


class NpuConfig(StageConfig):
    kind: Literal["target.npu"]
    profile: Literal[tuple(PROFILES)]  # type: ignore[valid-type]
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="artifact name; npu_<profile> if unset")
    activations: Optional[Literal["uint8", "int8", "uint16", "int16"]] = Field(
        None, description="activation integer type; the profile's default if unset (qnn-htp: uint16, intel-npu: uint8)")
    weights: Optional[Literal["uint8", "int8", "uint16", "int16"]] = Field(
        None, description="weight integer type; the profile's default if unset (qnn-htp: uint8, intel-npu: int8)")
    per_channel: bool = Field(False, description="per-channel weights on the ops the profile allows it for")
    calibration: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, le=100.0)
    samples: Optional[int] = Field(None, ge=1, description="calibration samples to use; all if unset")
    rewrites: Optional[list[Literal["finite_mask", "nan_guard", "static_reshape", "gemm_to_matmul"]]] = Field(
        None, description="hand-written rewrites to run; the profile's defaults if unset")
    mask_value: float = Field(MASK_VALUE, lt=0.0, ge=-1.0e4, description="finite_mask: what -inf mask constants become")
    soc_model: Optional[str] = Field(None, pattern=r"^[0-9]+$", description="qnn-htp: QNN SoC id the artifact is verified for")

    @field_validator("activations", "weights")
    @classmethod
    def _precision_fits_profile(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        profile = info.data.get("profile")
        if v is None or profile not in PROFILES:
            return v
        allowed = getattr(PROFILES[profile], info.field_name)
        if v not in allowed:
            raise ValueError(f"profile {profile} takes {info.field_name} as {' or '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _fits_profile(self) -> "NpuConfig":
        if self.soc_model is not None and PROFILES[self.profile].runtime != qnn.NAME:
            raise ValueError(f"soc_model applies only to profile qnn-htp, not {self.profile}")
        if self.calibration != "percentile" and "percentile" in self.model_fields_set:
            raise ValueError(f"percentile applies only to calibration 'percentile', not {self.calibration!r}")
        return self

    @property
    def artifact_name(self) -> str:
        return self.name or f"npu_{self.profile.replace('-', '_')}"

    def makes(self) -> str:
        return PROFILES[self.profile].artifact_format

    def produces(self) -> list[str]:
        return [self.artifact_name]


def _qtype(q: Any, name: str) -> Any:
    return {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8,
            "uint16": q.QuantType.QUInt16, "int16": q.QuantType.QInt16}[name]


# the weight input and its output-channel axis, per op type that may hold per-channel weights
_CHANNEL_AXIS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "Gemm": (1, 1), "MatMul": (1, 1)}


def _per_channel_overrides(path: Any, ops: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    out: dict[str, list[dict[str, Any]]] = {}
    for n in g.node:
        if n.op_type in ops and n.op_type in _CHANNEL_AXIS:
            idx, axis = _CHANNEL_AXIS[n.op_type]
            if n.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in n.attribute):
                axis = 1
            elif n.op_type == "Gemm":
                axis = 0
            if len(n.input) > idx and n.input[idx] in inits:
                out[n.input[idx]] = [{"axis": axis}]
    return out


def _gather_tables(path: Any) -> list[str]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer if i.data_type == 1}
    return [n.input[0] for n in g.node if n.op_type == "Gather" and n.input[0] in inits]


def precision_mix(path: Any) -> dict[str, dict[str, int]]:
    """Per op type: how many nodes read each kind of quantized input, from the DequantizeLinear
    nodes feeding them: "a:uint16" activations, "w:uint8" weights, "c:uint16" other constants
    (position tables, scales), "bias:int32"; "not quantized" for nodes with no QDQ input (the
    integer/boolean mask path, shape ops on int64)."""
    import onnx

    from edgekit.runtimes.npu.check import WEIGHTED

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: i.data_type for i in g.initializer}
    names = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}
    dq = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    mix: dict[str, dict[str, int]] = {}
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        seen: set[str] = set()
        for idx, t in enumerate(n.input):
            src = dq.get(t)
            if src is None:
                continue
            # the integer type: the quantized initializer's, else the zero point's
            zp = src.input[2] if len(src.input) > 2 else ""
            dtype = names.get(inits.get(src.input[0]) or inits.get(zp, 2), "?")
            if src.input[0] not in inits:
                role = "a"
            elif dtype == "int32":
                role = "bias"
            else:
                role = "w" if n.op_type in WEIGHTED and idx == 1 else "c"
            seen.add(f"{role}:{dtype}")
        for key in seen or {"not quantized"}:
            bucket = mix.setdefault(n.op_type, {})
            bucket[key] = bucket.get(key, 0) + 1
    return mix


class TargetNpu(Stage):
    kind = "target.npu"
    Config = NpuConfig

    def apply(self, state: ModelState, cfg: NpuConfig) -> tuple[ModelState, StageRecord]:
        require("onnx", extra="onnx")
        q = require("onnxruntime.quantization", extra="onnx")
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

        from edgekit.export import npu_rewrite as rewrite
        from edgekit.quantize import calibrate
        from edgekit.quantize.nodes import node_names
        from edgekit.runtimes.npu.check import check_file

        p = PROFILES[cfg.profile]
        if state.onnx_path is None:
            raise StageError("target.npu needs the float ONNX graph: put export.onnx before it")
        if state.calibration is None or len(state.calibration) == 0:
            raise DataError("target.npu: needs calibration data: set data.calibration in the recipe")
        samples = state.calibration.samples[: cfg.samples] if cfg.samples else state.calibration.samples
        act, wt = cfg.activations or p.default_activations, cfg.weights or p.default_weights
        enabled = list(cfg.rewrites if cfg.rewrites is not None else p.rewrites)
        before = node_names(state.onnx_path)
        prepared = state.workdir / f".{cfg.artifact_name}.pre.onnx"
        t0 = time.perf_counter()
        shapes = {k: list(v.shape) for k, v in state.example.items()}
        applied = rewrite.rewrite(state.onnx_path, prepared, shapes, enabled, cfg.mask_value)
        after = node_names(prepared)
        rewrite_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        hists = calibrate.collect(prepared, samples, None, threads=state.threads,
                                  tick=state.progress(f"calibrating {cfg.artifact_name}", len(samples)))
        levels = 65536 if act.endswith("16") else 256
        ranges = calibrate.ranges(hists, cfg.calibration, cfg.percentile, levels)
        cache = state.workdir / f".{cfg.artifact_name}.ranges.json"
        calibrate.write_cache(ranges, cache)
        calibration_s = time.perf_counter() - t1
        out = state.workdir / f"{cfg.artifact_name}.onnx"
        # per_channel=True in get_qnn_qdq_config would reach every weighted op through quantize_static;
        # the profile allows it on some ops only, so it is asked for per weight (a tensor override)
        overrides = _per_channel_overrides(prepared, p.per_channel_ops) if cfg.per_channel else {}
        # embedding tables read by Gather are weights, not activations: in the weight type they are
        # half the bytes of a 16-bit activation (MiniLM's 30522 x 384 token table: 23 -> 12 MB)
        overrides.update({t: [{"quant_type": _qtype(q, wt)}] for t in _gather_tables(prepared) if t not in overrides})
        qcfg = get_qnn_qdq_config(str(prepared), None, activation_type=_qtype(q, act), weight_type=_qtype(q, wt),
                                  per_channel=False, init_overrides=overrides or None)
        # onnxruntime logs a pre-processing reminder and prints progress; keep the console edgekit's
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                q.quantize_static(
                    str(prepared), str(out), None, calibration_cache_path=str(cache),
                    calibrate_method=q.CalibrationMethod.MinMax, quant_format=q.QuantFormat.QDQ,
                    activation_type=qcfg.activation_type, weight_type=qcfg.weight_type,
                    op_types_to_quantize=qcfg.op_types_to_quantize, nodes_to_exclude=qcfg.nodes_to_exclude,
                    per_channel=qcfg.per_channel, reduce_range=False,
                    use_external_data_format=qcfg.use_external_data_format, extra_options=qcfg.extra_options,
                )
        finally:
            root.setLevel(level)
        for f in (prepared, cache):
            f.unlink(missing_ok=True)
        problems = check_file(out, cfg.profile)
        if problems:
            out.unlink(missing_ok=True)
            # a node is what a user can act on; a graph-level line (a dynamic output) follows from it
            first = next((x for x in problems if x.node), problems[0])
            raise StageError(f"target.npu ({cfg.profile}): {len(problems)} problem(s) left after rewriting and "
                             f"quantizing; first: {first.line()}")
        options: dict[str, Any] = {}
        if p.runtime == qnn.NAME:

            options = {qnn.NAME: {"soc_model": cfg.soc_model or qnn.DEFAULT_SOC}}
        precision = "int8" if act.endswith("8") and wt.endswith("8") else "int16" if act.endswith("16") else "mixed"
        state.add(Artifact(cfg.artifact_name, out, p.artifact_format, precision, self.kind, options=options))
        measured = {
            "profile": cfg.profile,
            "profile_source": p.source,
            "nodes_before": len(before),
            "nodes_after_rewrites": len(after),
            "nodes_quantized_graph": len(node_names(out)),
            "rewrites_applied": applied.counts,
            "rewrites_enabled": enabled,
            "activations": act,
            "weights": wt,
            "per_channel": bool(cfg.per_channel),
            "precision_mix": precision_mix(out),
            "calibration_method": cfg.calibration,
            "calibration_samples": len(samples),
            "calibrated_tensors": len(ranges),
            "rewrite_s": round(rewrite_s, 3),
            "calibration_s": round(calibration_s, 3),
            "problems_left": [],
            "runtime_options": options,
        }
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.artifact_name],
                                  measured=measured)
