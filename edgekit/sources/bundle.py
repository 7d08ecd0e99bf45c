"""What a model factory may return besides a bare nn.Module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np


@dataclass
class ModelBundle:
    """A torch module plus what edgekit cannot infer from it.

    A factory (`pkg.mod:fn`) may return a bare `nn.Module` (then the recipe's `inputs` must say
    what it takes) or this, to ship example inputs, input/output names and the task."""

    module: Any
    example: Optional[dict[str, np.ndarray]] = None
    output_names: list[str] = field(default_factory=lambda: ["output"])
    task: Literal["classification", "segmentation", "embedding", "other"] = "other"
    info: dict[str, Any] = field(default_factory=dict)
