"""Built-in models: entrypoints usable as `model: {python: "edgekit.models.zoo:NAME"}`."""

from __future__ import annotations

from edgekit.sources.bundle import ModelBundle

ZOO = {
    "digits_cnn": "small CNN trained on scikit-learn digits (32x32, 10 classes)",
    "digits_vit": "small ViT (4x4 patches, 64+1 tokens, 4 blocks) trained on digits",
    "digits_vit_seg": "the digits ViT with a per-patch head: (1, 64, 11), digit or background per patch",
    "minilm": "all-MiniLM-L6-v2 sentence embedder (real weights, mean pooling; extra hf)",
    "vit_small_shape": "ViT-Small/16 shape at 224 px (197 tokens, width 384, 12 blocks), random weights",
    "resnet18_shape": "ResNet-18 shape at 224 px (basic blocks 64-512, residual adds), random weights",
}
# extras a zoo entry needs beyond the core install; `edgekit validate` reports them
EXTRAS = {"minilm": ("hf",)}


def digits_cnn() -> ModelBundle:
    import numpy as np

    from edgekit.models.digits_nets import DigitsCNN
    from edgekit.models.train import train_digits

    model = train_digits("digits_cnn", DigitsCNN, epochs=30, lr=3e-3)
    return ModelBundle(
        module=model,
        example={"x": np.zeros((1, 1, 32, 32), np.float32)},
        output_names=["logits"],
        task="classification",
    )


def digits_vit() -> ModelBundle:
    import numpy as np

    from edgekit.models.digits_nets import DigitsViT
    from edgekit.models.train import train_digits

    model = train_digits("digits_vit", DigitsViT, epochs=40, lr=3e-3, weight_decay=0.05)
    return ModelBundle(
        module=model,
        example={"x": np.zeros((1, 1, 32, 32), np.float32)},
        output_names=["logits"],
        task="classification",
    )


def digits_vit_seg() -> ModelBundle:
    import numpy as np

    from edgekit.models.digits_nets import DigitsSegViT
    from edgekit.models.train import train_digits

    model = train_digits("digits_vit_seg", DigitsSegViT, epochs=25, lr=4e-3, weight_decay=0.05, per_token=True)
    return ModelBundle(
        module=model,
        example={"x": np.zeros((1, 1, 32, 32), np.float32)},
        output_names=["token_logits"],
        task="segmentation",
    )


def minilm(seq_len: int = 128) -> ModelBundle:
    from edgekit.sources.hf import load_hf, minilm_dir

    return load_hf(str(minilm_dir()), seq_len=seq_len)


def vit_small_shape(seed: int = 0) -> ModelBundle:
    import numpy as np

    from edgekit.models.vit import vit_small_shape as build

    return ModelBundle(
        module=build(seed),
        example={"x": np.zeros((1, 3, 224, 224), np.float32)},
        output_names=["logits"],
        task="classification",
    )


def resnet18_shape(seed: int = 0) -> ModelBundle:
    import numpy as np

    from edgekit.models.resnet import resnet18_shape as build

    return ModelBundle(
        module=build(seed),
        example={"x": np.zeros((1, 3, 224, 224), np.float32)},
        output_names=["logits"],
        task="classification",
    )
