"""Pure metric functions over stacked outputs (samples x ...), shared by verify and evaluate."""

from __future__ import annotations

import numpy as np


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def cosine_per_sample(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened output; two zero vectors count as equal."""
    r, g = _flat(ref), _flat(got)
    num = np.sum(r * g, axis=1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(g, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.clip(np.where(both_zero, 1.0, cos), -1.0, 1.0)


def max_abs(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.max(np.abs(_flat(ref) - _flat(got)))) if len(ref) else 0.0


def mse(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean((_flat(ref) - _flat(got)) ** 2))


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(_flat(logits).argmax(1) == np.asarray(labels).reshape(-1)))


def token_top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Per-token accuracy of a dense head: (samples, tokens, classes) against (samples, tokens),
    the mean over every token of every sample."""
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels)))


def looks_like_token_logits(out: np.ndarray, labels: np.ndarray) -> bool:
    """(samples, tokens, classes) with one integer label per token: a dense head's output."""
    return out.ndim == 3 and labels.ndim == 2 and out.shape[:2] == labels.shape and out.shape[-1] > 1


def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean(_flat(ref).argmax(1) == _flat(got).argmax(1)))


def looks_like_logits(out: np.ndarray) -> bool:
    """(samples, 1, classes) or (samples, classes) with more than one class."""
    return out.ndim in (2, 3) and out.shape[-1] > 1 and int(np.prod(out.shape[1:-1])) == 1
