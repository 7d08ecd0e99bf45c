"""scikit-learn's digits (real 8x8 handwritten digits), upsampled to 32x32.

One fixed, stratified 70/30 split shared by training the zoo models, calibration and
evaluation, so calibration never sees a test image."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SIDE = 32
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def preprocess(images8: np.ndarray) -> np.ndarray:
    """(n, 8, 8) in 0..16 -> (n, 1, 32, 32) float32 in [-1, 1], nearest-neighbour upsampled."""
    x = images8.astype(np.float32) / 16.0
    x = x.repeat(SIDE // 8, axis=1).repeat(SIDE // 8, axis=2)
    return ((x - 0.5) / 0.5)[:, None, :, :]


@lru_cache(maxsize=1)
def split() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """split name -> (images (n,1,32,32), labels (n,), original sample indices (n,))."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(
        idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=d.target
    )
    x = preprocess(d.images)
    y = d.target.astype(np.int64)
    return {
        "train": (x[tr], y[tr], tr),
        "test": (x[te], y[te], te),
        "all": (x, y, idx),
    }
