"""Turn the recipe's `model:` and `inputs:` into a loaded model, example feeds and identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.artifact.files import sha256_file
from edgekit.errors import ModelLoadError, first_line
from edgekit.sources.bundle import ModelBundle
from edgekit.sources.entrypoint import import_entrypoint

DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


@dataclass
class LoadedModel:
    source_kind: str  # python | onnx | hf
    source_ref: str
    sha256: str
    torch_model: Any  # nn.Module, or None for an ONNX source
    onnx_path: Optional[Path]
    input_names: list[str]
    output_names: list[str]
    example: dict[str, np.ndarray]
    task: str
    info: dict[str, Any] = field(default_factory=dict)


def _feeds_from_specs(specs: list[Any]) -> dict[str, np.ndarray]:
    out = {}
    for s in specs:
        dt = DTYPES[s.dtype]
        out[s.name] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(s.shape, dtype=dt)
    return out


def _sha256_module(module: Any) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _torch_bundle(spec: Any, base_dir: Path) -> ModelBundle:
    import torch

    if spec.kind == "hf":
        from edgekit.sources.hf import load_hf

        path = Path(spec.hf)
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            raise ModelLoadError(f"model.hf: directory not found: {path}")
        return load_hf(str(path), **spec.kwargs)
    factory = import_entrypoint(spec.python, "model.python")
    try:
        result = factory(**spec.kwargs)
    except Exception as exc:  # the user's factory: whatever it raises is a model-load failure
        raise ModelLoadError(f"model.python: calling {spec.python}(**{spec.kwargs}) failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    if isinstance(result, ModelBundle):
        bundle = result
    elif isinstance(result, torch.nn.Module):
        bundle = ModelBundle(module=result)
    elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        ex = result[1] if isinstance(result[1], dict) else {f"input_{i}": v for i, v in enumerate(result[1])}
        bundle = ModelBundle(module=result[0], example={k: np.asarray(v) for k, v in ex.items()})
    else:
        raise ModelLoadError(
            f"model.python: {spec.python} returned {type(result).__name__}; allowed: an nn.Module, "
            "(module, example_inputs) or edgekit.models.bundle.ModelBundle"
        )
    bundle.module.eval()
    return bundle


def _check_torch_inputs(module: Any, feeds: dict[str, np.ndarray], ref: str) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        try:
            out = module(*[torch.from_numpy(v) for v in feeds.values()])
        except Exception as exc:
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            raise ModelLoadError(f"inputs: {shapes} do not fit model {ref!r}: {first_line(exc)}") from exc
    outs = out if isinstance(out, (tuple, list)) else [out]
    bad = [type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)]
    if bad:
        got = f"a {type(out).__name__} holding {bad[0]}" if outs is out else type(out).__name__
        raise ModelLoadError(f"model {ref!r}: forward returned {got}; allowed: "
                             "a tensor or a tuple/list of tensors (wrap the model to return those)")
    return [o.detach().numpy() for o in outs]


def load_model(spec: Any, inputs: Optional[list[Any]], base_dir: Path) -> LoadedModel:
    if spec.kind == "onnx":
        return _load_onnx(spec, inputs, base_dir)
    bundle = _torch_bundle(spec, base_dir)
    if inputs:
        example = _feeds_from_specs(inputs)
    elif bundle.example:
        example = {k: np.asarray(v) for k, v in bundle.example.items()}
    else:
        raise ModelLoadError(
            f"inputs: required for model {spec.ref!r}: its factory returned a bare nn.Module, "
            "so edgekit cannot know its input shapes"
        )
    outs = _check_torch_inputs(bundle.module, example, spec.ref)
    names = list(bundle.output_names)
    if len(names) != len(outs):
        names = [f"output_{i}" for i in range(len(outs))] if len(outs) > 1 else ["output"]
    return LoadedModel(
        source_kind=spec.kind,
        source_ref=spec.ref,
        sha256=_sha256_module(bundle.module),
        torch_model=bundle.module,
        onnx_path=None,
        input_names=list(example),
        output_names=names,
        example=example,
        task=bundle.task,
        info=bundle.info,
    )


def _load_onnx(spec: Any, inputs: Optional[list[Any]], base_dir: Path) -> LoadedModel:
    from edgekit.core.backends import require

    onnx = require("onnx", extra="onnx")
    path = Path(spec.onnx)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ModelLoadError(f"model.onnx: file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise ModelLoadError(f"model.onnx: {path} is not a readable ONNX model: {exc}") from exc
    from edgekit.sources.onnx_file import real_inputs

    graph_inputs = real_inputs(graph)
    declared: dict[str, tuple[list[int | str], int]] = {}
    for gi in graph_inputs:
        t = gi.type.tensor_type
        declared[gi.name] = ([d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in t.shape.dim], t.elem_type)
    if inputs:
        for s in inputs:
            if s.name not in declared:
                raise ModelLoadError(
                    f"inputs: {s.name!r} is not an input of {path.name}; its inputs: {list(declared)}"
                )
            dims = declared[s.name][0]
            if len(dims) != len(s.shape) or any(isinstance(d, int) and d > 0 and d != v for d, v in zip(dims, s.shape)):
                raise ModelLoadError(
                    f"inputs: {s.name} shape {s.shape} does not match {path.name}'s {dims}"
                )
        example = _feeds_from_specs(inputs)
    else:
        example = {}
        for name, (dims, elem) in declared.items():
            if not all(isinstance(d, int) and d > 0 for d in dims):
                raise ModelLoadError(
                    f"inputs: {path.name} input {name!r} has dynamic shape {dims}; declare it under inputs:"
                )
            dt = onnx.helper.tensor_dtype_to_np_dtype(elem)
            example[name] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(dims, dtype=dt)
    return LoadedModel(
        source_kind="onnx",
        source_ref=str(path),
        sha256=sha256_file(path),
        torch_model=None,
        onnx_path=path,
        input_names=list(example),
        output_names=[o.name for o in graph.output],
        example=example,
        task="other",
    )
