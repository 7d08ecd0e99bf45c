"""What flows between stages: the model in its current form and the artifacts made so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.progress import Progress, no_progress


@dataclass
class Artifact:
    """One deployable model file (or IR pair) and how to run it."""

    name: str  # short id used in tables and file names: "fp32", "int8"
    path: Path  # absolute, inside the run's working directory
    format: str  # an artifact format a registered runtime reads: "onnx", "openvino", "tensorrt"
    precision: str  # "fp32" | "int8" | "int16" (NPU: 16-bit activations) | "int4" | "fp16" | "mixed"
    produced_by: str  # stage kind, or "source" for an ONNX model given as the recipe's model
    extra_files: tuple[Path, ...] = ()  # e.g. an OpenVINO .bin or ONNX external data
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # runtime -> runner settings

    @property
    def runs_on(self) -> tuple[str, ...]:
        """Runtimes able to run it: the registered readers of its own format (a stage may write
        more than one: target.npu per profile), narrowed by the producing stage's row; a model
        given as the recipe's source has no stage."""
        from edgekit.runtimes.registry import runs
        from edgekit.stages.registry import REGISTRY

        if self.produced_by == "source":
            return tuple(runs(self.format))
        return REGISTRY[self.produced_by].runs_on(self.format)

    def files(self) -> list[Path]:
        return [self.path, *self.extra_files]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())


@dataclass
class Dataset:
    """Batch-1 samples as feeds (input name -> array), optional labels, and their identity."""

    name: str
    samples: list[dict[str, np.ndarray]]
    labels: Optional[np.ndarray] = None
    ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for s in self.samples:
            for k in sorted(s):
                h.update(k.encode())
                h.update(np.ascontiguousarray(s[k]).tobytes())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()

    def identity(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "samples": len(self),
            "ids": self.ids,
            "sha256": self.fingerprint(),
        }


@dataclass
class ModelState:
    torch_model: Any  # torch.nn.Module or None for ONNX sources
    input_names: list[str]
    output_names: list[str]
    example: dict[str, np.ndarray]
    workdir: Path  # where stages write model files (the artifact's models/ in the temp dir)
    onnx_path: Optional[Path] = None  # the current float ONNX graph, once exported
    artifacts: list[Artifact] = field(default_factory=list)
    calibration: Optional[Dataset] = None
    evaluation: Optional[Dataset] = None  # for stages that search against the task metric
    recipe: Any = None  # the whole typed recipe (accuracy budget, verify tolerance, targets)
    progress: Progress = no_progress
    threads: int = 2
    # the torch model as loaded, before any torch-side stage changed it: the teacher for
    # distillation; set by the first stage that modifies a copy (`source_model()`)
    original_model: Any = None
    # a language-model recipe's source (edgekit.sources.causal_lm.CausalLM): the HF directory the
    # generation targets build from, its tokenizer and family
    causal_lm: Any = None
    # quantize.weight_only's result (edgekit.quantize.lm_layers.QuantizedLM): integers the
    # generation targets place in their graphs instead of quantizing themselves
    weight_only: Any = None
    scratch: Optional[Path] = None  # files a run needs but does not ship (removed at the end)
    # a causal LM as loaded, before prune.depth changed `causal_lm`: what finetune.lm distils from
    lm_teacher: Any = None

    def source_model(self) -> Any:
        """The unmodified torch model; remembers the current one if no stage has copied yet."""
        if self.original_model is None:
            self.original_model = self.torch_model
        return self.original_model

    def add(self, artifact: Artifact) -> None:
        if any(a.name == artifact.name for a in self.artifacts):
            raise ValueError(f"two artifacts named {artifact.name!r}")
        self.artifacts.append(artifact)
