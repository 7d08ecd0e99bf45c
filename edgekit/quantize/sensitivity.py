"""Per-node quantization sensitivity: the error of the model output when only that node is
quantized (every other candidate kept float), as SQNR in dB, plus the task metric when
evaluation data is given. Cost is capped by scanning a fixed subset of samples (recorded).

A node whose quantization leaves the output bit-identical has an infinite SQNR, which JSON
cannot hold: its row says so explicitly, `"sqnr_db": null, "lossless": true`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.runtimes import ort
from edgekit.stages.state import Dataset

SENSITIVITY_FILE = "sensitivity.json"


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal power / error power); +inf when the outputs are identical."""
    r = np.asarray(ref, np.float64)
    err = float(np.sum((r - np.asarray(got, np.float64)) ** 2))
    sig = float(np.sum(r**2))
    if err == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(sig, 1e-30) / err)


def outputs(path: Path, samples: list[dict[str, np.ndarray]], threads: int,
            options: Optional[dict[str, Any]] = None) -> np.ndarray:
    from edgekit.runtimes import open_runner

    runner = open_runner(ort.NAME, path, threads, **(options or {}))
    try:
        return np.concatenate([np.asarray(runner.run(s)[0]) for s in samples], axis=0)
    finally:
        runner.close()


def subset(data: Dataset, n: int) -> Dataset:
    return Dataset(data.name, data.samples[:n], data.labels[:n] if data.labels is not None else None, data.ids[:n])


def scan(quantize: Callable[[Path, list[str]], None], float_path: Path, candidates: list[str],
         always_float: list[str], data: Dataset, score: Optional[Callable[[Path, Dataset, np.ndarray], float]],
         threads: int, tick: Callable[[int], None] = lambda n: None,
         options: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """One quantization per candidate with only that node quantized; most sensitive first
    (lowest SQNR). `quantize(out, excluded)` builds a model with `excluded` kept float."""
    ref = outputs(float_path, data.samples, threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-sens-") as tmp:
        one = Path(tmp) / "one.onnx"
        for node in candidates:
            quantize(one, [c for c in candidates if c != node] + always_float)
            got = outputs(one, data.samples, threads, options)
            db = sqnr_db(ref, got)
            row: dict[str, Any] = {"node": node, "sqnr_db": db if np.isfinite(db) else None,
                                   "lossless": not np.isfinite(db)}
            if score is not None:
                row["metric"] = score(one, data, ref)
            rows.append(row)
            tick(1)
    return sorted(rows, key=sort_key)


def sort_key(row: dict[str, Any]) -> float:
    """Most sensitive (lowest SQNR) first; lossless rows last."""
    return float("inf") if row.get("lossless") or row.get("sqnr_db") is None else float(row["sqnr_db"])


def document(rows: list[dict[str, Any]], data: Dataset, metric: Optional[str], reference: Optional[float]) -> dict[str, Any]:
    """The content of sensitivity.json: what was scanned, on which samples, and the rows."""
    return {
        "schema": 1,
        "method": "one node quantized at a time, all other candidates float",
        "samples": len(data),
        "sample_ids": data.ids,
        "metric": metric,
        "reference_metric": reference,
        "nodes": rows,
    }
