"""A graph that edgekit made and a runtime refuses is the stage's failure (StageError, exit 1)
naming the stage and the node, never "bad input" (exit 2): the runners raise ModelLoadError /
BackendUnavailable because for a user's own file that is what a refusal means."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Optional

from edgekit.errors import ArtifactRefused, BackendUnavailable, EdgekitError, ModelLoadError, StageError, first_line

# onnxruntime: `In Node, ("conv1_b_DequantizeLinear", DequantizeLinear, "", -1) : ... , Error Unrecognized ...`
_ORT_NODE = re.compile(r'In Node, \("([^"]*)", ([A-Za-z0-9_]+)')
# onnxruntime: `Could not find an implementation for DequantizeLinear(10) node with name 'x_dq'`
_ORT_KERNEL = re.compile(r"implementation for ([A-Za-z0-9_]+)\(\d+\) node with name '([^']*)'")
_ORT_REASON = re.compile(r", Error (.*)$")


def describe(text: str) -> tuple[str, str]:
    """(" at node 'name' (OpType)" or "", the reason) from a runtime's load error text."""
    m = _ORT_NODE.search(text)
    if m:
        reason = _ORT_REASON.search(text)
        return f" at node {m.group(1)!r} ({m.group(2)})", (reason.group(1) if reason else text).strip()
    m = _ORT_KERNEL.search(text)
    if m:
        return f" at node {m.group(2)!r} ({m.group(1)})", text[m.start():].split(". ")[0].strip()
    return "", text.strip()


def is_refusal(exc: EdgekitError) -> bool:
    """A runner's load/compile failure (not a missing package: that stays exit 4)."""
    cause = exc.__cause__
    return isinstance(exc, (ModelLoadError, BackendUnavailable)) and cause is not None \
        and not isinstance(cause, ImportError)


def cause_line(exc: BaseException) -> str:
    """The informative line of a runtime's error: onnxruntime's first; OpenVINO's last, after its
    chain of `Exception from src/...cpp:N:` lines."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception from"):
        return lines[-1]
    return first_line(cause)


def refused(stage: str, runtime: str, path: Path, exc: BaseException, hint: str = "") -> StageError:
    where, reason = describe(cause_line(exc))
    return StageError(f"{stage} made {Path(path).name}, which {runtime} refuses{where}: {reason}"
                      + (f" ({hint})" if hint else ""))


def stage_label(stages: Iterable[Any], artifact: Any) -> str:
    """"stages[i] (kind)" of the stage that made `artifact` (same kind, and same name if it has one)."""
    found = ""
    for i, cfg in enumerate(stages):
        if cfg.kind == artifact.produced_by:
            label = f"stages[{i}] ({cfg.kind})"
            if getattr(cfg, "name", None) == artifact.name:
                return label
            found = found or label
    return found or artifact.produced_by


def open_artifact(runtime: str, artifact: Any, threads: int, stages: Iterable[Any],
                  normalization: Optional[dict[str, Any]] = None) -> Any:
    """`open_runner` on an artifact; a refusal of one a stage made becomes that stage's failure,
    with the source normalisation's notes (e.g. an opset upgrade that could not be done) as hint."""
    from edgekit.runtimes import open_runner

    try:
        return open_runner(runtime, artifact.path, threads, **artifact.options.get(runtime, {}))
    except (ModelLoadError, BackendUnavailable) as exc:
        if artifact.produced_by == "source" or not is_refusal(exc):
            raise
        hint = "; ".join(f"source normalisation: {n}" for n in (normalization or {}).get("notes", []))
        raise refused(stage_label(stages, artifact), runtime, artifact.path, exc, hint) from exc


def refused_artifact(art: dict[str, Any], runtime: str, exc: BaseException, command: str) -> ArtifactRefused:
    """A later `verify` / `profile` of an artifact directory: the runtime refuses a file a stage
    made, named with the stage from the manifest and the node from the runtime's message."""

    where, reason = describe(cause_line(exc) if exc.__cause__ is not None else str(exc).split(": ", 1)[-1])
    return ArtifactRefused(f"{command}: artifact {art['name']!r} ({art['path']}, made by {art.get('produced_by', '?')}): "
                           f"{runtime} refuses it{where}: {reason}")


def refused_in_stage(label: str, exc: ModelLoadError) -> StageError:
    """A runner the stage itself opened (sensitivity scan, accuracy-aware trials) refused a graph
    the stage had just written."""
    runtime = str(exc).split(":", 1)[0]
    where, reason = describe(cause_line(exc))
    return StageError(f"{label} failed: {runtime} refuses a graph it made{where}: {reason}")
