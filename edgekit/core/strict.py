"""The one base of every edgekit schema (recipe, stage configs and records, devices.yaml,
profile.json): unknown keys are errors, never silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
