"""The artifact directory: manifest.json with a sha256 of every file, written atomically."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from edgekit.errors import UsageError

MANIFEST = "manifest.json"
SCHEMA = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(root: Path, path: Path, fmt: str, precision: str | None = None) -> dict[str, Any]:
    return {
        "path": path.relative_to(root).as_posix(),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "format": fmt,
        "precision": precision,
    }


def _non_finite(data: Any, where: str = "") -> str | None:
    """The JSON path of the first NaN or infinity in `data`, if any."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "<root>"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}" if where else str(k))
        if found:
            return found
    return None


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (no NaN/Infinity, which most parsers reject), written atomically: a reader,
    or a run killed halfway, sees the old file or the new one, never half of one."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    except ValueError:
        raise ValueError(f"{path.name}: {_non_finite(data)} is not a finite number; JSON cannot hold it") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    from edgekit.manifest_shape import ManifestShape

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_leftovers(final: Path) -> list[Path]:
    """Remove what a killed run of this artifact left beside it: `.<name>.tmp-<pid>-*` build
    directories (and `.<name>.old-<pid>-*` copies of a replaced artifact, once `final` exists)
    whose process is gone. A directory of a run still going, or named without a pid, is kept
    unless it is a build directory from before pids were recorded."""
    removed = []
    for kind in ("tmp", "old"):
        for p in final.parent.glob(f".{glob_escape(final.name)}.{kind}-*"):
            pid = p.name[len(f".{final.name}.{kind}-"):].split("-", 1)[0]
            if not p.is_dir() or (pid.isdigit() and _alive(int(pid))):
                continue
            if kind == "old" and (not final.exists() or not pid.isdigit()):
                continue  # may be the only copy of an artifact whose swap was cut short
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextmanager
def atomic_dir(final: Path, force: bool) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success it replaces `final`, on any error it and any
    parent directory this created are removed, so a failed run leaves nothing behind."""
    if final.exists() and not force:
        raise UsageError(f"{final} already exists; pass --force to replace it")
    created: list[Path] = []
    parent = final.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"{final}: cannot create the output directory: {p} is a file, not a directory")
            break
        created.append(p)
    parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=parent))
    try:
        yield tmp
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=parent))
            os.replace(final, trash / final.name)
            try:
                os.replace(tmp, final)
            except BaseException:  # put the old artifact back before cleaning up
                os.replace(trash / final.name, final)
                trash.rmdir()
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                break
        raise
