"""export.onnx: torch -> ONNX, simplified, checked, and validated against torch before it is
called done (a graph that disagrees with its source is an ExportError naming the largest
difference and the tolerance)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekit.core.backends import require
from edgekit.errors import ExportError, StageError, first_line
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import Artifact, ModelState


class ExportOnnxConfig(StageConfig):
    kind: Literal["export.onnx"]
    opset: int = Field(17, ge=17, le=23)
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    simplify: Literal["onnxslim", "onnxsim", "none"] = "onnxslim"
    dynamic_batch: bool = False
    name: str = Field("fp32", pattern=r"^[A-Za-z0-9_-]+$")
    parity_rtol: float = Field(1e-4, gt=0)


def _simplify(path: Path, how: str) -> str:
    onnx = require("onnx", extra="onnx")
    if how == "none":
        return "none"
    if how == "onnxslim":
        onnxslim = require("onnxslim", extra="onnx")
        model = onnxslim.slim(str(path))
        onnx.save(model, str(path))
        return f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()
    onnxsim = require("onnxsim", extra="onnx")
    model, ok = onnxsim.simplify(onnx.load(str(path)))
    if not ok:
        raise ExportError(f"export.onnx: onnxsim could not validate the simplified graph of {path.name}")
    onnx.save(model, str(path))
    return "onnxsim"


def _tracer_warnings(caught: list) -> list[str]:
    """The TracerWarnings among the warnings an export raised, one line each, deduplicated:
    each says the trace took one branch or one shape of a value that may differ for other
    inputs, so the exported graph may be wrong for them. The exporters' other warnings
    (deprecations, opset notes) stay silent."""
    import torch

    lines = []
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            msg = (str(w.message).strip().splitlines() or [""])[0]
            lines.append(f"{Path(w.filename).name}:{w.lineno}: {msg}")
    return list(dict.fromkeys(lines))


def export_torch(module, example: dict[str, np.ndarray], out: Path, cfg: ExportOnnxConfig,
                 output_names: list[str]) -> list[str]:
    """Export; returns the TracerWarnings raised (see `_tracer_warnings`)."""
    import torch

    require("onnx", extra="onnx", why="torch.onnx.export writes through it")
    args = tuple(torch.from_numpy(v) for v in example.values())
    names = list(example)
    dyn = {n: {0: "batch"} for n in names + output_names} if cfg.dynamic_batch else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if cfg.exporter == "torchscript":
                torch.onnx.export(module, args, str(out), opset_version=cfg.opset, input_names=names,
                                  output_names=output_names, dynamic_axes=dyn, dynamo=False,
                                  do_constant_folding=True)
            else:
                require("onnxscript", extra="onnx", why="the dynamo exporter")
                shapes = None
                if cfg.dynamic_batch:
                    batch = torch.export.Dim("batch")
                    shapes = tuple({0: batch} for _ in names)
                prog = torch.onnx.export(module, args, input_names=names, output_names=output_names,
                                         opset_version=cfg.opset, dynamo=True, dynamic_shapes=shapes,
                                         optimize=True)
                prog.save(str(out))
        except Exception as exc:
            raise ExportError(f"export.onnx: {cfg.exporter} exporter failed: {first_line(exc)}") from exc
    return _tracer_warnings(caught)


def check_parity(path: Path, module, samples: list[dict[str, np.ndarray]], rtol: float, where: str) -> float:
    """Largest |onnx - torch| / (max|torch| + eps) over the samples; raises past `rtol`."""
    import torch

    from edgekit.runtimes.ort import OrtRunner

    runner = OrtRunner(path, threads=2)
    worst = 0.0
    try:
        for feeds in samples:
            with torch.no_grad():
                ref = module(*[torch.from_numpy(v) for v in feeds.values()])
            refs = ref if isinstance(ref, (tuple, list)) else [ref]
            got = runner.run(feeds)
            for r, g in zip(refs, got):
                r = r.numpy()
                worst = max(worst, float(np.max(np.abs(r - g)) / (np.max(np.abs(r)) + 1e-12)))
    finally:
        runner.close()
    if worst > rtol:
        raise ExportError(
            f"{where}: ONNX Runtime output differs from torch by {worst:.3g} (relative max), "
            f"tolerance {rtol:g}"
        )
    return worst


class ExportOnnx(Stage):
    kind = "export.onnx"
    Config = ExportOnnxConfig

    def apply(self, state: ModelState, cfg: ExportOnnxConfig) -> tuple[ModelState, StageRecord]:
        onnx = require("onnx", extra="onnx")
        if state.torch_model is None:
            raise StageError("export.onnx: the model is already ONNX; remove this stage")
        out = state.workdir / f"{cfg.name}.onnx"
        tracer_warnings = export_torch(state.torch_model, state.example, out, cfg, state.output_names)
        simplifier = _simplify(out, cfg.simplify)
        try:
            onnx.checker.check_model(str(out), full_check=True)
        except Exception as exc:
            raise ExportError(f"export.onnx: onnx.checker rejects {out.name}: {first_line(exc)}") from exc
        samples = [state.example]
        if state.calibration is not None:
            samples += state.calibration.samples[:4]
        worst = check_parity(out, state.torch_model, samples, cfg.parity_rtol, "export.onnx")
        state.onnx_path = out
        state.add(Artifact(cfg.name, out, "onnx", "fp32", self.kind))
        graph = onnx.load(str(out), load_external_data=False).graph
        return state, StageRecord(
            kind=self.kind,
            settings=cfg.model_dump(),
            outputs=[cfg.name],
            measured={
                "simplifier": simplifier,
                "nodes": len(graph.node),
                "parity_max_rel_err": worst,
                "parity_samples": len(samples),
                # the trace may not hold for other inputs: shown in the compress summary and report
                "tracer_warnings": tracer_warnings,
            },
        )
