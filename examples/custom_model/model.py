"""A user's own model and data, brought to edgekit through two entrypoints.

Run it from the repository root:
    edgekit compress --recipe examples/custom_model/recipe.yaml
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TinyMLP(nn.Module):
    """Classifies the 64 raw pixels of a digit; trained here in a second so the example is real."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.3, random_state=1, stratify=d.target)
    return (xtr, ytr) if split == "train" else (xte, yte)


def build() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """The model factory: returns (module, example inputs) so the recipe needs no `inputs:`."""
    torch.manual_seed(0)
    model = TinyMLP()
    x, y = _digits("train")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), {"pixels": x[:1]}


def samples(split: str):
    """The data entrypoint: yields (feeds, label) pairs, one sample each."""
    x, y = _digits(split)
    for xi, yi in zip(x, y):
        yield {"pixels": xi[None, :]}, int(yi)
