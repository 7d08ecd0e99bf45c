"""The stage protocol: a stage is a `kind`, a pydantic `Config` and one `apply(state, config)`
returning the new state and a `StageRecord` (plain JSON for the manifest). Kept apart from the
registry so that the registry imports no stage and no state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from edgekit.core.strict import Strict
from edgekit.stages.registry import REGISTRY

if TYPE_CHECKING:
    from edgekit.stages.state import ModelState


class StageConfig(Strict):
    """Base of every stage's config: unknown keys are errors, never ignored."""

    kind: str

    def produces(self) -> list[str]:
        """Names of the artifacts this stage adds (its `name`, if it has one)."""
        name = getattr(self, "name", None)
        return [name] if isinstance(name, str) else []

    def makes(self) -> str:
        """The artifact format this config makes: the registry row's, unless the config decides
        (target.npu writes a different format per profile)."""
        return REGISTRY[self.kind].makes

    def runs_on(self) -> tuple[str, ...]:
        """Runtimes that will run what this config makes (validate refuses targets that run none)."""
        return REGISTRY[self.kind].runs_on(self.makes())


class StageRecord(Strict):
    """What a stage did, with what settings and what it measured; stored in the manifest."""

    kind: str
    settings: dict[str, Any]
    seconds: float = 0.0
    outputs: list[str] = []
    measured: dict[str, Any] = {}


class Stage:
    """A stage: `kind`, a `Config` and `apply`. Subclasses keep heavy imports inside `apply`."""

    kind: ClassVar[str]
    Config: ClassVar[type[StageConfig]]

    def apply(self, state: ModelState, config: Any) -> tuple[ModelState, StageRecord]:
        raise NotImplementedError

    def run(self, state: ModelState, config: Any) -> tuple[ModelState, StageRecord]:
        t0 = time.perf_counter()
        state, record = self.apply(state, config)
        record.seconds = round(time.perf_counter() - t0, 3)
        return state, record
