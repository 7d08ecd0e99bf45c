"""Train the zoo's digits models once and cache their weights in the user cache dir.

Training is seeded and single-configuration, so every machine gets the same kind of model in
a few seconds; the cache key includes the architecture, the recipe of training and torch's
version, so a change to any of them retrains instead of loading stale weights."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Callable

import numpy as np

from edgekit.core.cache import cache_dir


def train_digits(
    name: str, make: Callable[[], "object"], epochs: int, lr: float, seed: int = 0,
    batch: int = 64, weight_decay: float = 1e-4, augment: bool = False, per_token: bool = False,
) -> "object":
    """`per_token` trains a dense head on `digits.token_labels` (one class per patch) instead
    of the digit label; shifts would misalign those labels, so it excludes `augment`."""
    import torch

    from edgekit.data.digits import split, token_labels

    if per_token and augment:
        raise ValueError("train_digits: augment shifts images off their per-token labels; use one or the other")
    settings = dict(name=name, epochs=epochs, lr=lr, seed=seed, batch=batch,
                    weight_decay=weight_decay, augment=augment, torch=torch.__version__)
    if per_token:  # only when set, so the existing models' cache keys stay valid
        settings["per_token"] = True
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.pt"
    torch.manual_seed(seed)
    model = make()
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:  # a corrupt or stale cache file: retrain and overwrite it
            pass
    x, y, ids = split()["train"]
    if per_token:
        y = token_labels(ids)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(xt) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            j = perm[i : i + batch]
            xb = xt[j]
            if augment:  # small random shifts: the digits are tiny and a ViT overfits them fast
                dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            opt.zero_grad()
            # (B, classes) or (B, tokens, classes) against (B,) or (B, tokens) labels
            loss_fn(model(xb).flatten(0, -2), yt[j].flatten()).backward()
            opt.step()
            sched.step()
    model.eval()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model


def accuracy(model: "object", split_name: str = "test") -> float:
    import torch

    from edgekit.data.digits import split

    x, y, _ = split()[split_name]
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float(np.mean(pred == y))
