"""The artifact directory's files: each with its sha256, JSON written atomically, and the whole
directory built beside its final place and renamed into it last."""

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
