"""`target.tensorrt`: an engine built from an ONNX artifact of the recipe (the float export for
fp32/fp16, a QDQ artifact for INT8 by explicit quantization), after the offline lint.

The lint always runs; the build needs the tensorrt package and an NVIDIA GPU. Without them the
stage records the lint and why it did not build, and writes no engine: a laptop or CI learns
whether the model will build, the GPU box builds it. TensorRT 11 dropped weak typing (the FP16 /
INT8 builder flags): there the network is strongly typed and the ONNX graph's own types decide
the precision, so fp16 needs an fp16 ONNX source; TensorRT 10 (JetPack) uses the flags."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from edgekit.core.backends import require, version_of
from edgekit.core.strict import Strict
from edgekit.errors import StageError
from edgekit.runtimes.tensorrt import runner as trt_runtime
from edgekit.runtimes.tensorrt.lint import errors, lint
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class ShapeRange(Strict):
    min: list[int] = Field(min_length=1)
    opt: list[int] = Field(min_length=1)
    max: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "ShapeRange":
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"min, opt and max must have the same rank (got {self.min}, {self.opt}, {self.max})")
        if any(not (a <= b <= c) or a < 1 for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"need 1 <= min <= opt <= max in every dimension (got {self.min}, {self.opt}, {self.max})")
        return self


class TensorRTConfig(StageConfig):
    kind: Literal["target.tensorrt"]
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="artifact name; trt_<precision> if unset")
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    source: str = Field("auto", description="the ONNX artifact to build from; auto: the float export for fp32/fp16, "
                                            "the last quantize.int8 artifact for int8")
    shapes: dict[str, ShapeRange] = Field({}, description="optimization profile per dynamic input; "
                                                          "the example's shape when unset")
    workspace_mb: int = Field(1024, ge=16)
    sparse_weights: bool = Field(False, description="let TensorRT pick 2:4 sparse kernels (after prune.nm; "
                                                    "Ampere or newer, fp16/int8 layers)")
    timing_cache: Optional[str] = Field(None, description="file to reuse builder timings across builds")
    lint: Literal["error", "warn"] = Field("error", description="refuse the build when the lint finds errors, or record them")

    @property
    def artifact_name(self) -> str:
        return self.name or f"trt_{self.precision}"

    def produces(self) -> list[str]:
        return [self.artifact_name]


def _source(state: ModelState, cfg: TensorRTConfig) -> tuple[str, Path]:
    onnx_arts = [a for a in state.artifacts if a.format == "onnx"]
    if cfg.source != "auto":
        art = next((a for a in onnx_arts if a.name == cfg.source), None)
        if art is None:
            raise StageError(f"target.tensorrt: source {cfg.source!r} is not an ONNX artifact made before this stage; "
                             f"allowed: {', '.join(a.name for a in onnx_arts) or 'none'}")
        return art.name, art.path
    if cfg.precision == "int8":
        art = next((a for a in reversed(onnx_arts) if a.produced_by == "quantize.int8"), None)
        if art is None:
            raise StageError("target.tensorrt: precision int8 builds from explicit Q/DQ: add a quantize.int8 stage "
                             "(activations: {dtype: int8, symmetric: true}) before it, or name one in source")
        return art.name, art.path
    if state.onnx_path is None:
        raise StageError("target.tensorrt: no float ONNX graph to build from; add export.onnx before it")
    return "fp32", state.onnx_path


class TargetTensorRT(Stage):
    kind = "target.tensorrt"
    Config = TensorRTConfig

    def apply(self, state: ModelState, cfg: TensorRTConfig) -> tuple[ModelState, StageRecord]:
        source, path = _source(state, cfg)
        problems = lint(path)
        bad = errors(problems)
        measured: dict[str, Any] = {"source": source, "lint": [p.to_json() for p in problems],
                                    "lint_errors": len(bad), "lint_warnings": len(problems) - len(bad)}
        if bad and cfg.lint == "error":
            raise StageError(f"target.tensorrt: {source} ({path.name}) will not build: {len(bad)} lint error(s); "
                             f"first: {bad[0].line()}")
        missing = trt_runtime.missing()
        if missing:
            measured.update(built=False, not_built=f"no {cfg.artifact_name} engine built here: {missing}; the lint ran "
                                                 f"on {source} ({len(bad)} errors, {len(problems) - len(bad)} warnings)")
            return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
        engine = state.workdir / f"{cfg.artifact_name}.engine"
        measured.update(_build(path, engine, cfg, state), built=True, tensorrt=version_of("tensorrt"))
        state.add(Artifact(cfg.artifact_name, engine, trt_runtime.FORMAT, cfg.precision, self.kind))
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), outputs=[cfg.artifact_name],
                                  measured=measured)


def _build(onnx_path: Path, engine_path: Path, cfg: TensorRTConfig, state: ModelState) -> dict[str, Any]:
    """Parse, configure (typing by version, shape profile, workspace, timing cache), build,
    then read the engine inspector's per-layer precisions back."""
    trt = require("tensorrt", extra="tensorrt", why="TensorRT engine builds")
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = major >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown parser error"
        raise StageError(f"target.tensorrt: the ONNX parser refused {onnx_path.name}: {first}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if cfg.sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if not strongly_typed:
        if cfg.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # layers left float in an INT8 graph run fp16
        if cfg.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    elif cfg.precision == "fp16" and not any(
            network.get_input(i).dtype == trt.DataType.HALF for i in range(network.num_inputs)) and _all_float32(onnx_path):
        raise StageError("target.tensorrt: TensorRT >= 11 builds strongly typed networks, so precision fp16 needs an fp16 "
                         "ONNX source: add quantize.fp16 before this stage and set source: to its name")
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tensor.shape):
            dynamic.append(tensor)
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            rng = cfg.shapes.get(tensor.name)
            example = list(state.example[tensor.name].shape) if tensor.name in state.example else None
            if rng is None and example is None:
                raise StageError(f"target.tensorrt: input {tensor.name!r} has dynamic shape {tuple(tensor.shape)}; "
                                 "give shapes: {name: {min, opt, max}}")
            lo, mid, hi = (rng.min, rng.opt, rng.max) if rng else (example, example, example)
            profile.set_shape(tensor.name, lo, mid, hi)
        config.add_optimization_profile(profile)
    cache_path = Path(cfg.timing_cache).expanduser() if cfg.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    if blob is None:
        raise StageError(f"target.tensorrt: the builder produced no engine for {onnx_path.name} (see TensorRT's log above)")
    engine_path.write_bytes(bytes(blob))
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(blob))
    return {"build_s": round(build_s, 2), "strongly_typed": strongly_typed, "layer_precisions": _precisions(trt, engine)}


def _all_float32(onnx_path: Path) -> bool:
    onnx = require("onnx", extra="onnx")
    m = onnx.load(str(onnx_path), load_external_data=False)
    return all(t.data_type != onnx.TensorProto.FLOAT16 for t in m.graph.initializer)


def _precisions(trt: Any, engine: Any) -> dict[str, int]:
    """How many engine layers run at each output precision, from the engine inspector."""
    import json

    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    counts: dict[str, int] = {}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        outs = layer.get("Outputs") or [{}]
        fmt = str(outs[0].get("Format/Datatype", "unknown")).split(" ")[0]
        counts[fmt] = counts.get(fmt, 0) + 1
    return counts
