"""ViT shapes for speed measurements, built from the zoo's own ViT blocks (no timm).

Random weights: what a latency ratio needs is the shape (tokens, width, depth, heads), and the
same DigitsViT layout lets the token-reduction adapter treat it like the trained digits ViT."""

from __future__ import annotations

from edgekit.models.digits_nets import DigitsViT


def vit_small_shape(seed: int = 0) -> DigitsViT:
    """ViT-Small/16 at 224 px: 196 patches + class token, width 384, 12 blocks, 6 heads, MLP 4x."""
    import torch

    torch.manual_seed(seed)
    model = DigitsViT(img=224, patch=16, dim=384, depth=12, heads=6, classes=1000, in_chans=3)
    for blk in model.blocks:  # DigitsViT's MLP is 2x wide; ViT-S uses 4x
        blk.mlp = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    return model.eval()
