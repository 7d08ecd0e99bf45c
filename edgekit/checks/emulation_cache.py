"""Emulated outputs kept by everything that decides them, so that an identical rebuild, a sweep
trial that produced the same file, or `edgekit verify --cpu` after `compress` does not spend
QEMU's 50-300x again.

The key is the model's bytes (the file and its same-stem siblings: external data, an IR's
.bin), the runtime with its version and options, the class with its QEMU CPU model, the input
samples' bytes and the thread count. A run cut short by its budget is kept with that budget
and reused under a budget no larger (a rerun would stop at the same place or sooner), also when
it fell short of the minimum sample count, none at all included: a rerun would spend the budget
on the same "not verified: budget". A model that failed is never kept."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.core.backends import version_of
from edgekit.core.cache import cache_dir

FORMAT = 1  # bump when what an entry holds changes


@dataclass(frozen=True)
class Entry:
    outputs: np.ndarray
    meta: dict[str, Any]  # samples, seconds, budget_s, complete, stored_at


def model_files(model: Path) -> list[Path]:
    """The file and its siblings that share its stem (external data, weights): a change to any
    of them changes the key. Unrelated files with a longer name only cost a miss."""
    stem = model.name.split(".")[0]
    return sorted(p for p in model.parent.iterdir() if p.is_file() and p.name.split(".")[0] == stem)


def inputs_digest(inputs: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(inputs):
        a = np.ascontiguousarray(inputs[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def key(model: Path, runtime: str, engine: str, options: dict[str, Any], cls: str, qemu_model: str,
        inputs_sha: str, threads: int) -> str:
    h = hashlib.sha256()
    for f in model_files(model):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(json.dumps({"format": FORMAT, "runtime": runtime, "engine": engine, "version": version_of(engine),
                         "options": options, "class": cls, "qemu": qemu_model, "inputs": inputs_sha,
                         "threads": threads}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _paths(k: str) -> tuple[Path, Path]:
    root = cache_dir("emulation")
    return root / f"{k}.npz", root / f"{k}.json"


def load(k: str, planned: int, budget_s: Optional[float], min_samples: Optional[int] = None) -> Optional[Entry]:
    """The stored run for `k` if it stands for what a new run would give, else None. A run
    stopped at its budget because it could not reach a minimum sample count (no grace for the
    sample in flight) stands only for runs that need at least as many."""
    data, meta_path = _paths(k)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(data) as z:
            outputs = z["outputs"]
    except (OSError, ValueError, KeyError):
        return None
    if len(outputs) != meta.get("samples"):
        return None
    if len(outputs) >= planned:
        return Entry(outputs[:planned], meta)
    # cut short by its budget: a rerun under a budget no larger stops at the same place or
    # sooner, so it is answered from here, short of the minimum included (the verdict is then
    # "not verified: budget" again, without spending the budget again)
    cached_budget = meta.get("budget_s")
    cut_for = meta.get("cut_for")
    if cut_for is not None and (min_samples is None or min_samples < cut_for):
        return None
    if cached_budget is not None and budget_s is not None and budget_s <= cached_budget:
        return Entry(outputs, meta)
    return None


def store(k: str, outputs: np.ndarray, planned: int, seconds: Optional[float], budget_s: Optional[float],
          cut_for: Optional[int] = None) -> None:
    """Atomically: a reader sees the old entry or the new one (the data file goes in first, and
    the metadata that vouches for it last)."""
    data, meta_path = _paths(k)
    meta = {"samples": int(len(outputs)), "planned": planned, "complete": len(outputs) >= planned,
            "seconds": seconds, "budget_s": budget_s, "cut_for": cut_for,
            "stored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for path, write in ((data, lambda f: np.savez(f, outputs=outputs)),
                        (meta_path, lambda f: f.write(json.dumps(meta).encode()))):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
