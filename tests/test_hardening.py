"""Issue 9's hardening: figures that were silently wrong, and leftovers of earlier runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_report_shows_the_reference_latency_of_an_onnx_source():
    from edgekit.report import summary_rows

    manifest = {"metrics": {"reference": {"runtime": "onnxruntime", "metric": "top1", "value": 0.9}},
                "profile": {"reference/onnxruntime": {"median_ms": 1.5, "p90_ms": 2.0}}, "artifacts": []}
    ref = summary_rows(manifest)[0]
    assert (ref["runtime"], ref["p50_ms"], ref["p90_ms"]) == ("onnxruntime", 1.5, 2.0)
