"""What every runner is: load a model, run batch feeds, give numpy outputs, release it.

verify, evaluate and profile all go through runners, so an artifact is always judged on the
runtime it will be deployed with."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


class Runner:
    runtime: str = ""
    load_s: Optional[float] = None  # load/compile seconds; None where this runner did not load the model
    details: dict[str, Any]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the session / compiled model now rather than whenever the runner object is
        collected (a caller may keep it, e.g. in a list of results); idempotent. The runner
        cannot run afterwards."""
        for attr in self._holds:
            if hasattr(self, attr):
                setattr(self, attr, None)

    _holds: tuple[str, ...] = ()
