"""The one registry of stages (the protocol itself is `edgekit.stages.base`).

The registry is a table of plain strings (kind -> where the class lives, which extra it needs,
one line of description), in the manner of Olive's pass table: listing stages and checking what
a recipe needs import nothing, and validating a recipe imports only the light stage modules
(they import their backends inside `apply`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

from edgekit.runtimes import genai, ort, ov, ov_genai
from edgekit.runtimes.npu import qnn
from edgekit.runtimes.tensorrt import runner as trt


def check_artifact_names(model_kind: str, stages: list[Any]) -> None:
    """Two artifacts with one name would overwrite each other's file and manifest entry: refuse
    the recipe before any stage runs, naming both stages."""
    seen = {"fp32": "the ONNX source model (artifact 'fp32')"} if model_kind == "onnx" else {}
    for i, s in enumerate(stages):
        for name in s.produces():
            if name in seen:
                raise ValueError(f"stages[{i}] ({s.kind}): artifact name {name!r} is already taken by {seen[name]}; "
                                 f"set name: to another value (allowed: letters, digits, _ and -)")
            seen[name] = f"stages[{i}] ({s.kind})"


@dataclass(frozen=True)
class StageInfo:
    kind: str
    where: str  # "package.module:Class"
    extras: tuple[str, ...]
    # "torch" (before export), "export", "onnx" (after export), "backend" (a runtime's own format),
    # "lm" (a causal LM's generation format, built from its source directory)
    side: str
    summary: str
    makes: str = ""  # the artifact format it writes ("" for a stage that changes the torch model)
    only: tuple[str, ...] = ()  # runtimes that alone run what it makes, of all that read the format
    # changes a causal LM's float weights in an LM recipe (before any quantization or target),
    # whatever its side for other models
    lm_float: bool = False

    def runs_on(self, fmt: Optional[str] = None) -> tuple[str, ...]:
        """Runtimes that can run what it produces in `fmt` (its row's format by default): every
        registered reader of the format, or the few of them named in `only` (a graph of one
        runtime's own operators)."""
        from edgekit.runtimes.registry import runs

        fmt = self.makes if fmt is None else fmt
        return tuple(r for r in runs(fmt) if not self.only or r in self.only) if fmt else ()

    def load(self) -> Any:
        """The stage class (an `edgekit.stages.base.Stage`), imported only now."""
        module, _, name = self.where.partition(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, StageInfo] = {
    info.kind: info
    for info in (
        StageInfo(
            "export.onnx",
            "edgekit.export.onnx:ExportOnnx",
            ("onnx",),
            "export",
            "Export the torch model to ONNX (opset >= 17), simplify it and check parity with torch.",
            makes=ort.FORMAT,
        ),
        StageInfo(
            "quantize.int8",
            "edgekit.quantize.static_int8:StaticInt8",
            ("onnx",),
            "onnx",
            "Static post-training INT8 (QDQ) with streaming calibration (minmax/percentile/entropy/"
            "mse), cnn/transformer presets, SmoothQuant, sensitivity scan, accuracy-aware fallback.",
            makes=ort.FORMAT,
        ),
        StageInfo(
            "quantize.dynamic",
            "edgekit.quantize.dynamic_int8:DynamicInt8",
            ("onnx",),
            "onnx",
            "Dynamic INT8 (weights int8, activation ranges at run time; MatMul/Gemm by default).",
            makes=ort.FORMAT, only=(ort.NAME,),
        ),
        StageInfo(
            "quantize.fp16",
            "edgekit.quantize.fp16:Fp16",
            ("onnx",),
            "onnx",
            "Cast the float graph to fp16 (float32 inputs/outputs, unsafe ops kept float32).",
            makes=ort.FORMAT,
        ),
        StageInfo(
            "quantize.int4",
            "edgekit.quantize.int4:Int4",
            ("onnx",),
            "onnx",
            "Weight-only INT4 of MatMul weights as MatMulNBits (rtn/gptq/hqq, group size); "
            "ONNX Runtime only (OpenVINO INT4: target.openvino).",
            makes=ort.FORMAT, only=(ort.NAME,),
        ),
        StageInfo(
            "target.openvino",
            "edgekit.export.openvino:TargetOpenVINO",
            (ov.INFO.extra,),
            "backend",
            "OpenVINO IR (.xml/.bin) of the float model: fp32, NNCF INT8 (transformer-aware, "
            "SmoothQuant), or NNCF weight-only INT8 / INT4 (group size, ratio, AWQ/GPTQ/scale estimation).",
            makes=ov.FORMAT,
        ),
        StageInfo(
            "target.tensorrt",
            "edgekit.export.tensorrt:TargetTensorRT",
            ("onnx",),
            "backend",
            "TensorRT engine (fp32/fp16, INT8 by explicit Q/DQ) after an offline lint (parser operators, "
            "Q/DQ zero points and placement); without a GPU: the lint and a note, no engine.",
            makes=trt.FORMAT,
        ),
        StageInfo(
            "target.npu",
            "edgekit.export.npu:TargetNpu",
            ("onnx", "npu"),
            "backend",
            "NPU graph for a profile (qnn-htp, intel-npu): static shapes, rewrites (Gelu/LayerNorm fusion, "
            "finite attention masks, no NaN guards, static Reshape), integer-only QDQ in the profile's "
            "precisions, checked against the profile's operator table; qnn-htp verified on the HTP emulator.",
            makes=qnn.FORMAT,
        ),
        StageInfo(
            "target.onnxruntime-genai",
            "edgekit.export.genai:TargetGenai",
            ("llm",),
            "lm",
            "A causal LM to an ONNX Runtime GenAI folder by its model builder: fp32 / fp16 / int4 / int8 "
            "(MatMulNBits packed by onnxruntime's block quantizer or the builder's rtn / k_quant: block size, "
            "symmetric or not, accuracy level, lm_head at int8), "
            "KV cache included.",
            makes=genai.FORMAT,
        ),
        StageInfo(
            "target.openvino-genai",
            "edgekit.export.ov_genai:TargetOVGenai",
            ("llm", ov.INFO.extra),
            "lm",
            "A causal LM to an OpenVINO GenAI folder: a stateful IR (KV cache as state) and tokenizer IRs, "
            "weights by NNCF (int8 / int4 sym or asym, group size, ratio with a sensitivity metric, AWQ, "
            "scale estimation, GPTQ, backup mode) on calibration text.",
            makes=ov_genai.FORMAT,
        ),
        StageInfo(
            "quantize.weight_only",
            "edgekit.quantize.weight_only:WeightOnly",
            ("inc", "llm"),
            "lm",
            "Data-aware weight-only INT4 / INT8 of a causal LM's linear layers on the torch model by Intel "
            "Neural Compressor (RTN, GPTQ) or quantization-aware training (qat); group size, symmetric or not, "
            "per-layer bits by name or re:, or a mix under a byte budget; "
            "the generation targets after it place these integers as they are.",
        ),
        StageInfo(
            "tokens.merge",
            "edgekit.tokens.stages:TokenMerge",
            (),
            "torch",
            "Token merging (ToMe bipartite soft matching, size-weighted attention) with a static "
            "per-layer schedule, for ViT/DeiT and BERT-family models; exports with static shapes.",
        ),
        StageInfo(
            "tokens.prune",
            "edgekit.tokens.stages:TokenPrune",
            (),
            "torch",
            "Token pruning (EViT: keep the top tokens by class-token attention, fuse the rest into "
            "one) with a static per-layer schedule; exports with static shapes.",
        ),
        StageInfo(
            "prune.structured",
            "edgekit.prune.structured:PruneStructured",
            ("prune",),
            "torch",
            "Remove whole conv channels, attention heads and FFN neurons (Torch-Pruning dependency "
            "graph; l1/l2/taylor/hessian importance, uniform or global ratio, round_to, ignore); "
            "the history is recorded as JSON and replayable.",
        ),
        StageInfo(
            "finetune",
            "edgekit.finetune.stage:Finetune",
            (),
            "torch",
            "Recovery training after pruning: epochs, lr, built-in digits data or a user entrypoint, "
            "optional distillation from the unpruned model; zero weights stay zero.",
        ),
        StageInfo(
            "finetune.qat",
            "edgekit.quantize.qat:FinetuneQAT",
            ("onnx",),
            "torch",
            "Quantization-aware training for the quantize.int8 / quantize.int4 stage after it: its exact "
            "weight grid (and INT8 activation ranges) in the forward pass, distillation from the float model; "
            "weights snapped so the quantizer keeps the trained integers.",
        ),
        StageInfo(
            "prune.magnitude",
            "edgekit.prune.magnitude:PruneMagnitude",
            (),
            "torch",
            "Unstructured magnitude pruning (global, per layer, or layer-adaptive LAMP) with a "
            "gradual polynomial schedule interleaved with finetuning; zeros only, no CPU speed-up.",
        ),
        StageInfo(
            "prune.nm",
            "edgekit.prune.magnitude:PruneNM",
            (),
            "torch",
            "N:M semi-structured sparsity (2:4): N of every M input weights kept, masks recorded; "
            "sparse tensor-core GPUs can use it, CPU runtimes do not speed up.",
        ),
        StageInfo(
            "prune.depth",
            "edgekit.prune.depth:PruneDepth",
            (),
            "torch",
            "Drop the transformer attention/MLP sublayers or blocks that change their input least "
            "(cosine of input vs output on calibration data); a causal LM's decoder blocks by cosine, angular "
            "distance or greedy least-KL removal; every candidate's score recorded.",
            lm_float=True,
        ),
        StageInfo(
            "finetune.lm",
            "edgekit.finetune.lm:FinetuneLM",
            ("llm",),
            "lm",
            "Heal a pruned causal LM by distillation from the unpruned one (KL on next-token logits) on "
            "calibration text, all weights or LoRA adapters (peft) merged back; step and time budget, seeded, "
            "loss curve recorded.",
            lm_float=True,
        ),
    )
}


def get(kind: str) -> StageInfo:
    return REGISTRY[kind]
