"""The recipe's sections other than stages: model, inputs, data, verify, deploy, accuracy,
profile and gates. Each forbids unknown keys (`Strict`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from edgekit.core.strict import Strict

MeterName = Literal["none", "auto", "rapl", "nvml", "jetson", "external", "estimate"]


class EnergySpec(Strict):
    """`profile.energy`: which meter reads energy (`edgekit.profile.energy` opens it)."""

    meter: MeterName = "none"
    idle_s: float = Field(2.0, ge=0.0, description="idle power is measured this long before the run; 0 = no net figure")
    period_s: float = Field(0.05, gt=0.0, le=10.0, description="sampling period of live meters")
    csv: Optional[str] = Field(None, description="external meter log: rows of 'timestamp, watts'")
    tdp_w: Optional[float] = Field(None, gt=0.0, description="estimate: the CPU's TDP in watts")
    rail: str = "VDD_IN"
    gpu_index: int = Field(0, ge=0)
    sysfs_root: str = "/"

    @model_validator(mode="after")
    def _needs(self) -> "EnergySpec":
        if self.meter == "external" and not self.csv:
            raise ValueError("meter 'external' needs csv: the meter's log file (timestamp, watts)")
        if self.meter == "estimate" and self.tdp_w is None:
            raise ValueError("meter 'estimate' needs tdp_w: the CPU's TDP in watts (edgekit does not guess it)")
        return self


NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ModelSpec(Strict):
    python: Optional[str] = Field(None, description="entrypoint 'package.module:factory'")
    onnx: Optional[str] = None
    hf: Optional[str] = None
    gguf: Optional[str] = Field(None, description="a llama.cpp GGUF file (a causal LM, already quantized)")
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        given = [k for k in ("python", "onnx", "hf", "gguf") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of python, onnx, hf, gguf (got {given or 'none'})")
        if self.python and not re.fullmatch(r"[\w.]+:[\w.]+", self.python):
            raise ValueError(f"python entrypoint {self.python!r} must look like 'package.module:factory'")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("python", "onnx", "hf", "gguf") if getattr(self, k))

    @property
    def ref(self) -> str:
        return getattr(self, self.kind)


class InputSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][\w.:/-]*$")
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    dtype: Literal["float32", "float16", "int64", "int32", "bool"] = "float32"


class DataSpec(Strict):
    builtin: Optional[Literal["digits", "digits_seg", "sentences", "pydoc_topics"]] = None
    npz: Optional[str] = None
    python: Optional[str] = None
    text: Optional[str] = Field(None, description="a UTF-8 text file, read whole as one document")
    jsonl: Optional[str] = Field(None, description="one JSON object a line; `field` names the key holding the text")
    field: Optional[str] = Field(None, min_length=1, description="with jsonl: the key of each line's text")
    split: Optional[Literal["train", "test", "all"]] = None  # default: train to calibrate, test to evaluate
    samples: Optional[Annotated[int, Field(ge=1)]] = None  # text sources: how many token windows
    seq_len: Optional[Annotated[int, Field(ge=8)]] = Field(None, description="causal LMs: tokens per window")
    seed: int = 0

    @model_validator(mode="after")
    def _exactly_one(self) -> "DataSpec":
        given = [k for k in SOURCES if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(SOURCES)} (got {given or 'none'})")
        if self.jsonl and not self.field:
            raise ValueError(f"jsonl {self.jsonl!r} needs field: the JSON key that holds each line's text")
        if self.field and not self.jsonl:
            raise ValueError(f"field {self.field!r} applies only to jsonl; the source here is {given[0]}")
        if self.seq_len is not None and (self.npz or self.builtin in ENCODER_BUILTINS):
            source = f"builtin {self.builtin}" if self.builtin else "npz"
            raise ValueError(f"seq_len {self.seq_len} applies only to text sources (builtin pydoc_topics, text, "
                             f"jsonl, python); the source here is {source}, shaped by the model's inputs")
        return self


# one per DataSpec: two sources in one spec would leave which one calibrates to a guess
SOURCES = ("builtin", "npz", "python", "text", "jsonl")
# builtins whose samples take their shape from the model's declared inputs, not from seq_len
ENCODER_BUILTINS = ("digits", "digits_seg", "sentences")


class DataSection(Strict):
    calibration: Optional[DataSpec] = None
    evaluation: Optional[DataSpec] = None

    @model_validator(mode="after")
    def _default_splits(self) -> "DataSection":
        """Calibration never sees evaluation samples unless the recipe says so explicitly."""
        if self.calibration is not None and self.calibration.split is None:
            self.calibration.split = "train"
        if self.evaluation is not None and self.evaluation.split is None:
            self.evaluation.split = "test"
        return self


class VerifySpec(Strict):
    cosine_min: float = Field(0.99, gt=0.0, le=1.0)
    max_abs: Optional[float] = Field(None, gt=0.0)
    top1_agreement_min: Optional[float] = Field(None, ge=0.0, le=1.0)
    # causal LMs: mean KL(reference || artifact) per next token on data.evaluation
    kl_max: Optional[float] = Field(None, gt=0.0)
    samples: int = Field(64, ge=1)
    # verify again under QEMU for each deploy.cpus class this machine is not (x86-avx2, x86-sse)
    emulate: bool = True
    emulate_samples: Optional[int] = Field(None, ge=1, description="fewer samples under emulation (50-300x slower)")
    # each emulated class gets this many seconds (loading included), shared by its artifacts;
    # an artifact that ran fewer than emulate_min_samples in its share is "not verified: budget"
    emulate_budget_s: float = Field(900.0, gt=0.0, description="seconds per emulated class, shared by its artifacts")
    emulate_min_samples: int = Field(8, ge=1, description="fewest samples that count as verified under emulation")
    emulate_cache: bool = Field(True, description="reuse an earlier emulated run of the same model bytes, runtime, "
                                                  "class and samples ($EDGEKIT_CACHE/emulation)")

    @model_validator(mode="after")
    def _emulated_counts(self) -> "VerifySpec":
        if self.emulate_samples is not None and self.emulate_samples < self.emulate_min_samples:
            raise ValueError(f"emulate_samples {self.emulate_samples} is below emulate_min_samples "
                             f"{self.emulate_min_samples}: no artifact could count as verified under emulation")
        return self


CpuClass = Literal["x86-sse", "x86-avx2", "x86-vnni", "x86-amx", "arm64"]


class DeploySpec(Strict):
    """Where the artifacts must be right. Left out: every x86 class (portable)."""

    cpus: Optional[list[CpuClass]] = Field(None, min_length=1)
    # keep a stage setting that saturates on one of `cpus` (normally refused at validate time)
    accept_saturation: bool = False

    def classes(self) -> list[str]:
        from edgekit.runtimes.cpu_classes import X86_CLASSES

        return list(dict.fromkeys(self.cpus)) if self.cpus else list(X86_CLASSES)


class AccuracySpec(Strict):
    metric: Optional[Literal["top1", "token_top1", "cosine_fidelity", "mse", "perplexity"]] = None
    max_drop: Optional[float] = Field(None, ge=0.0)
    # causal LMs: the largest relative perplexity increase over the fp32 reference (0.25 = +25%)
    max_increase: Optional[float] = Field(None, ge=0.0)
    evaluator: Optional[str] = Field(None, pattern=r"^[\w.]+:[\w.]+$",
                                     description="'pkg.mod:fn' called as fn(runner, dataset) -> float")
    higher_is_better: bool = True  # direction of the evaluator's score

    @model_validator(mode="after")
    def _one_metric(self) -> "AccuracySpec":
        if self.metric and self.evaluator:
            raise ValueError(f"give metric or evaluator, not both (got metric {self.metric!r} and "
                             f"evaluator {self.evaluator!r})")
        return self


class ProfileSpec(Strict):
    enabled: bool = True
    warmup_s: float = Field(1.0, ge=0.0)
    min_duration_s: float = Field(3.0, ge=0.0)
    min_iters: int = Field(64, ge=1)
    max_duration_s: float = Field(60.0, gt=0.0)
    threads: int = Field(2, ge=1)
    # subprocess: each ONNX Runtime/OpenVINO measurement in a fresh runner process (its own peak
    # RSS, no interference from the build); in_process: on the pipeline's open runner (faster)
    isolation: Literal["subprocess", "in_process"] = "subprocess"
    energy: EnergySpec = EnergySpec()
    # causal LMs: time to first token after prompts of these lengths, then new_tokens decoded
    prompt_tokens: list[Annotated[int, Field(ge=1)]] = Field([128], min_length=1)
    new_tokens: int = Field(64, ge=2)

    @model_validator(mode="after")
    def _bounds(self) -> "ProfileSpec":
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(
                f"max_duration_s {self.max_duration_s} is below min_duration_s {self.min_duration_s}"
            )
        return self


class GateSpec(Strict):
    latency_p90_ms: Optional[float] = Field(None, gt=0)
    latency_p99_ms: Optional[float] = Field(None, gt=0)
    size_mb: Optional[float] = Field(None, gt=0)
    accuracy_drop_max: Optional[float] = Field(None, ge=0)
    fidelity_min: Optional[float] = Field(None, gt=0, le=1)
    peak_rss_mb: Optional[float] = Field(None, gt=0)
    # causal LMs: decode speed after the first token, and TTFT at the first profile.prompt_tokens
    decode_tokens_per_s_min: Optional[float] = Field(None, gt=0)
    ttft_p90_ms: Optional[float] = Field(None, gt=0)
    energy_mj_per_inference: Optional[float] = Field(None, gt=0)
    # baseline / A/B: a median slowdown beyond this fraction (after noise) fails the gate
    regression_max: float = Field(0.10, gt=0, le=10)
