"""The shape of manifest.json that inspect, verify, report, profile and gate read: what
`artifact.check_manifest` holds a manifest to before any command indexes into it. Extra keys
are allowed (newer writers may add fields); missing or mistyped ones are one error line."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Recipe(_Open):
    targets: list[str] = Field(min_length=1)
    verify: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    gates: dict[str, Any] = {}


class _Source(_Open):
    kind: str
    ref: str
    sha256: str


class _Input(_Open):
    shape: list[int] = Field(min_length=1)
    dtype: str


class _Artifact(_Open):
    name: str
    path: str
    format: str
    precision: Optional[str]
    runs_on: list[str]
    bytes: int = Field(ge=0)
    runtime_options: Optional[dict[str, dict[str, Any]]] = None


class _File(_Open):
    path: str
    sha256: str


class _Stage(_Open):
    kind: str
    seconds: float = 0.0
    outputs: list[str] = []
    measured: dict[str, Any] = {}


class _Measurement(_Open):
    n: int


class _Cpu(_Open):
    model: str
    logical_cores: Optional[int] = None


class _Environment(_Open):
    python: str
    cpu: _Cpu
    versions: dict[str, Optional[str]]


class ManifestShape(_Open):
    name: str
    edgekit_version: str
    created: str = ""
    recipe_sha256: str
    recipe: _Recipe
    source_model: _Source
    inputs: dict[str, _Input]
    artifacts: list[_Artifact]
    files: list[_File]
    stages: list[_Stage]
    metrics: dict[str, dict[str, Any]]
    profile: dict[str, _Measurement]
    environment: _Environment
