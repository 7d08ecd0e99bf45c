"""What each NPU accepts, snapshotted in code with where it comes from.

A profile is a promise about a backend edgekit cannot always reach (no Hexagon or Core Ultra on
a build machine), so the allow-lists are data with a source and a date, and `edgekit inspect
--target` checks a graph against them offline. Where the backend itself is here (the QNN HTP
emulator of the onnxruntime-qnn wheel) it has the final word: verification loads the graph with
CPU fallback disabled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# The Qualcomm HTP runtime row (`edgekit.runtimes.npu.qnn`) takes its name and artifact format
# from here, so that the profiles need not import the runner that checks against them.
QNN_HTP = "qnn-htp"
QNN_FORMAT = "qnn-onnx"

# Ops whose output shape depends on the data (or that hold subgraphs): no NPU compiler takes
# them, whatever its operator table says (the QNN EP lists NonZero, but runs no dynamic shapes).
DYNAMIC_OPS = {
    "NonZero": "its output shape depends on how many elements are non-zero",
    "Unique": "its output shape depends on the data",
    "NonMaxSuppression": "its output shape depends on how many boxes survive",
    "Compress": "its output shape depends on the condition",
    "Loop": "a loop with a data-dependent trip count",
    "If": "a data-dependent branch",
    "Scan": "a scan subgraph",
}

# The ONNX Runtime QNN EP operator table: the "Supported ONNX operators" section of
# docs/execution_providers/QNN-ExecutionProvider.md in github.com/onnxruntime/onnxruntime-qnn
# (commit 0131740f, the QNN EP 2.x documentation), read 2026-12-01; op names only. The wheel
# measured against it is onnxruntime-qnn 2.7.0 (QAIRT 2.40 HTP backend).
QNN_HTP_OPS = frozenset({
    "Abs", "Add", "And", "ArgMax", "ArgMin", "Asin", "Atan", "AveragePool", "BatchNormalization", "Cast",
    "Ceil", "Clip", "Concat", "Conv", "ConvTranspose", "Cos", "CumSum", "DepthToSpace", "DequantizeLinear",
    "Div", "Einsum", "Elu", "Equal", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements",
    "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "GridSample", "GroupNormalization", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
    "Inverse", "IsNaN", "LRN", "LSTM", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "LogSoftmax", "LpNormalization", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul", "Neg",
    "NonZero", "Not", "Or", "PRelu", "Pad", "Pow", "QuantizeLinear", "Reciprocal", "ReduceL2",
    "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "RMSNormalization",
    "Reshape", "Resize", "RoiAlign", "Round", "RotaryEmbedding", "STFT", "ScatterElements", "ScatterND",
    "Sigmoid", "Sign", "Sin", "Slice", "Softmax", "Softplus", "SpaceToDepth", "Split", "Sqrt", "Squeeze",
    "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Unsqueeze", "Upsample",
    "Where",
    # com.microsoft domain entries of the same table
    "com.microsoft:DequantizeLinear", "com.microsoft:QuantizeLinear", "com.microsoft:Gelu",
    "com.microsoft:FusedMatMul", "com.microsoft:QuickGelu", "com.microsoft:MatMulNBits",
    "com.microsoft:RotaryEmbedding", "com.microsoft:SimplifiedLayerNormalization",
})
QNN_HTP_SOURCE = ("ONNX Runtime QNN EP operator table (onnxruntime/onnxruntime-qnn "
                  "docs/execution_providers/QNN-ExecutionProvider.md @ 0131740f, read 2026-12-01)")

# Intel NPU through OpenVINO. The OpenVINO documentation ("NPU Device" and "Supported Devices"
# pages, 2024-2025) states: no dynamic shapes on NPU; quantized models are U8/I8 (int8 or mixed
# FP16-INT8), computed in FP16. It publishes NPU operator coverage only as a conformance report,
# not a table, so this list is edgekit's conservative choice: ONNX ops that OpenVINO's ONNX
# frontend maps onto static-shape opset operations used by CNN and transformer encoders, minus
# control flow and data-dependent shapes. Where an NPU is present, OpenVINO's own
# `query_model(model, "NPU")` is the authority.
INTEL_NPU_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Conv", "ConvTranspose",
    "DepthToSpace", "DequantizeLinear", "Div", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather",
    "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "HardSigmoid", "HardSwish", "Identity",
    "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less", "Log", "MatMul", "Max", "MaxPool",
    "Min", "Mul", "Neg", "Not", "PRelu", "Pad", "Pow", "QuantizeLinear", "Reciprocal", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Softmax",
    "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})
INTEL_NPU_SOURCE = ("OpenVINO NPU device documentation (docs.openvino.ai 2024-2025: static shapes only, U8/I8 "
                    "quantized, FP16 compute); operator list: edgekit's conservative choice, see profiles.py")

# the rewrite that removes an op a profile refuses, for the problem's `fix`
FIXES = {
    "Erf": "fuse the Erf chain into Gelu (rewrite fuse_Gelu: onnxruntime's qnn_preprocess_model)",
    "IsNaN": "drop the softmax NaN guard (rewrite nan_guard, after finite_mask)",
    "ReduceL2": "fuse into LpNormalization (rewrite fuse_LpNormalization: qnn_preprocess_model)",
    "Shape": "replace the computed shape by the inferred constant (rewrite static_reshape)",
    "ConstantOfShape": "fold with static input shapes (rewrite fix_input_shapes, then constant folding)",
    "Range": "fold with static input shapes (rewrite fix_input_shapes, then constant folding)",
    "QuantizeLinear": "quantize with ai.onnx QDQ in the profile's precisions (stage target.npu)",
    "DequantizeLinear": "quantize with ai.onnx QDQ in the profile's precisions (stage target.npu)",
}


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    ops: frozenset[str]
    source: str
    activations: tuple[str, ...]  # integer types a QDQ activation may have
    weights: tuple[str, ...]  # integer types a QDQ weight may have
    per_channel_ops: tuple[str, ...]  # ops whose weights may be quantized per channel
    default_activations: str
    default_weights: str
    runtime: Optional[str] = None  # the registered runtime that verifies its artifacts here, if any
    artifact_format: str = "onnx"
    rewrites: tuple[str, ...] = ()  # hand-written rewrites it runs by default
    notes: tuple[str, ...] = field(default_factory=tuple)


PROFILES: dict[str, Profile] = {
    # named after the runtime that verifies its artifacts (the HTP emulator)
    QNN_HTP: Profile(
        name=QNN_HTP,
        summary="Qualcomm Hexagon HTP via ONNX Runtime's QNN EP: static shapes, integer QDQ only, "
                "u8/u16 activations, u8/s8 weights, per-channel weights only on Conv/ConvTranspose",
        ops=QNN_HTP_OPS, source=QNN_HTP_SOURCE,
        activations=("uint8", "uint16"), weights=("uint8", "int8"),
        per_channel_ops=("Conv", "ConvTranspose"),
        default_activations="uint16", default_weights="uint8",
        runtime=QNN_HTP, artifact_format=QNN_FORMAT,
        rewrites=("finite_mask", "nan_guard", "static_reshape"),
        notes=("MatMul of two activations: the EP table lists (u8, u8), (u8, u16), (u16, u8); for two uint16 "
               "inputs the EP's op trace shows a Convert it inserts (MiniLM ran so on the emulator)",),
    ),
    "intel-npu": Profile(
        name="intel-npu",
        summary="Intel NPU (Core Ultra) via OpenVINO: static shapes, u8/s8 QDQ, per-channel int8 weights",
        ops=INTEL_NPU_OPS, source=INTEL_NPU_SOURCE,
        activations=("uint8", "int8"), weights=("int8", "uint8"),
        per_channel_ops=("Conv", "ConvTranspose", "MatMul", "Gemm"),
        default_activations="uint8", default_weights="int8",
        runtime=None, artifact_format="onnx",
        rewrites=("finite_mask", "nan_guard", "static_reshape"),
    ),
}


def get(name: str) -> Profile:
    return PROFILES[name]
