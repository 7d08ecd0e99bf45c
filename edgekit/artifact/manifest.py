"""manifest.json: reading it back and holding it to the shape every command reads (`shape`), so
a hand-edited or foreign manifest is one error line rather than a KeyError deep in a command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError

MANIFEST = "manifest.json"
SCHEMA = 1


def is_language_model(manifest: dict[str, Any]) -> bool:
    """A causal LM's directory: verified by perplexity, timed in generation (TTFT, decode per
    token) rather than in one latency; profile, gate --ab and the sweep branch on it."""
    source = manifest.get("source_model") if isinstance(manifest, dict) else None
    return isinstance(source, dict) and source.get("task") == "causal-lm"


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    path = artifact_dir / MANIFEST
    if not path.is_file():
        raise UsageError(f"{artifact_dir}: not an edgekit artifact (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid JSON: {exc}") from None
    check_manifest(path, manifest)
    return manifest


# the top-level fields that inspect, verify, report, profile and gate read without further checks
_REQUIRED = {"recipe": dict, "source_model": dict, "inputs": dict, "artifacts": list, "files": list,
             "stages": list, "metrics": dict, "profile": dict, "environment": dict}


def check_manifest(path: Path, manifest: Any) -> None:
    """Reject a hand-edited, truncated or foreign manifest here, as one line, rather than as a
    KeyError deep inside whichever command reads the missing field first."""
    if not isinstance(manifest, dict):
        raise UsageError(f"{path}: not an edgekit manifest: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("schema") != SCHEMA:
        raise UsageError(f"{path}: manifest schema {manifest.get('schema')!r} is not supported; allowed: {SCHEMA}")
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            got = "missing" if key not in manifest else f"got {type(manifest[key]).__name__}"
            raise UsageError(f"{path}: field '{key}' must be a JSON {'object' if kind is dict else 'array'} ({got})")
    from pydantic import ValidationError

    from edgekit.artifact.shape import ManifestShape

    try:
        ManifestShape.model_validate(manifest)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        got = "missing" if e["type"] == "missing" else f"got {e.get('input')!r:.60}"
        raise UsageError(f"{path}: field '{where}': {e['msg'].removeprefix('Value error, ')} ({got})") from None
    listed = {f["path"] for f in manifest["files"]}
    for i, a in enumerate(manifest["artifacts"]):
        if a["path"] not in listed:
            raise UsageError(f"{path}: field 'artifacts[{i}].path': {a['path']!r} is not among the manifest's files")


def read_reference(root: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """reference.npz: the recorded inputs (`input.<name>` for every manifest input, batch first)
    and outputs, checked against the manifest, or one UsageError line saying what is wrong."""
    import zipfile

    import numpy as np

    path = root / "reference.npz"
    if not path.is_file():
        raise UsageError(f"{root}: no reference.npz (the recorded reference inputs and outputs)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: not a readable .npz: {exc}") from None
    need = [f"input.{k}" for k in manifest["inputs"]] + ["output"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise UsageError(f"{path}: no array {missing[0]!r}; expected {', '.join(need)} (got {', '.join(arrays) or 'none'})")
    inputs = {k: arrays[f"input.{k}"] for k in manifest["inputs"]}
    n = len(arrays["output"]) if arrays["output"].ndim else 0
    for k, v in inputs.items():
        want = manifest["inputs"][k]
        if v.ndim != len(want["shape"]) or tuple(v.shape[1:]) != tuple(want["shape"][1:]) or len(v) != n or n == 0:
            raise UsageError(f"{path}: input.{k} has shape {list(v.shape)}, output {list(arrays['output'].shape)}; "
                             f"the manifest's input is {want['shape']} per sample and both need the same samples")
    return inputs, arrays["output"]
