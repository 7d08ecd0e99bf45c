"""The sweep's directory: one folder per finished trial under trials/<id>/ (the cache), and
state.json, which says whether the last run finished. The trial id is a hash of (recipe sha256,
device fingerprint, device name): what decides a result, so a re-run finds every trial it already has, and a
changed recipe or another CPU is a new trial rather than a stale hit."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Optional

from edgekit.artifact.files import atomic_dir, write_json
from edgekit.errors import UsageError

TRIAL = "trial.json"
STATE = "state.json"


def trial_id(recipe_sha256: str, fingerprint: str, device: str) -> str:
    """The device's name is part of it too: two machines of one model in a cluster are two
    devices, each timed and recorded as itself."""
    return hashlib.sha256(f"{recipe_sha256}|{fingerprint}|{device}".encode()).hexdigest()[:16]


def load(trials_dir: Path, tid: str) -> Optional[dict[str, Any]]:
    """A finished trial's record, or None (never run, or interrupted before it was complete:
    a trial folder appears only whole, so a partial one cannot be read as a result)."""
    p = trials_dir / tid / TRIAL
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("id") == tid else None


def write_failed(trials_dir: Path, record: dict[str, Any]) -> None:
    """A failed trial is a folder with trial.json only, written the same all-or-nothing way."""
    with atomic_dir(trials_dir / record["id"], force=True) as tmp:
        write_json(tmp / TRIAL, record)


def clean_partial(trials_dir: Path) -> int:
    """Remove what an interrupted run left half-written (.<id>.*.tmp folders)."""
    n = 0
    for p in trials_dir.glob(".*.tmp") if trials_dir.is_dir() else ():
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def check(sweep_dir: Path, resume: bool) -> dict[str, Any]:
    """Refuse to start over an unfinished run unless told to resume it: the folder may belong to
    a sweep that is still running, and two runs writing one folder would mix their results.
    Checked before Ray starts, so the refusal costs nothing."""
    path = sweep_dir / STATE
    prev: dict[str, Any] = {}
    if path.is_file():
        try:
            prev = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            prev = {"status": "running"}
    if prev.get("status") == "running" and not resume:
        done = len(list((sweep_dir / "trials").glob("*/" + TRIAL))) if (sweep_dir / "trials").is_dir() else 0
        raise UsageError(f"{sweep_dir}: a sweep started {prev.get('started', '?')} did not finish "
                         f"({done} trials done); pass --resume to continue it")
    return prev


def begin(sweep_dir: Path, sweep_sha256: str, prev: dict[str, Any]) -> dict[str, Any]:
    """Mark the folder as in use (a run killed from here on leaves it 'running')."""
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    clean_partial(sweep_dir / "trials")
    state = {"status": "running", "started": _now(), "sweep_sha256": sweep_sha256,
             "resumed_from": prev.get("started") if prev.get("status") == "running" else None}
    write_json(sweep_dir / STATE, state)
    return state


def finish(sweep_dir: Path, state: dict[str, Any], trials_run: int, trials_cached: int) -> None:
    write_json(sweep_dir / STATE, {**state, "status": "finished", "finished": _now(),
                                   "trials_run": trials_run, "trials_cached": trials_cached})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
