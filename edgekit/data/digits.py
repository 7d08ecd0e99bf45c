"""scikit-learn's digits (real 8x8 handwritten digits), upsampled to 32x32.

One fixed, stratified 70/30 split shared by training the zoo models, calibration and
evaluation, so calibration never sees a test image."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SIDE = 32
TEST_FRACTION = 0.3
SPLIT_SEED = 0
INK = 4  # of 16: an 8x8 pixel at least this dark is ink, anything lighter is background
BACKGROUND = 10  # the per-patch class of background, after the ten digit classes


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


def token_labels(sample_ids: np.ndarray) -> np.ndarray:
    """Per-patch targets for a dense (segmentation-style) head: (n,) sample indices -> (n, 64).

    A 4x4 patch of the 32x32 image is exactly one 8x8 pixel, so each patch is labelled with the
    digit where that pixel is ink and BACKGROUND elsewhere: the ink mask is local, the class
    needs the whole image, which is what token merging can lose and restoring must keep."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pix = d.images[sample_ids].reshape(len(sample_ids), -1)
    digit = d.target[sample_ids].astype(np.int64)[:, None]
    return np.where(pix >= INK, digit, BACKGROUND).astype(np.int64)
