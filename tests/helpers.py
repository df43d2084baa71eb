"""Builders and utilities the tests share."""
from __future__ import annotations


def build_tiny_vit(num_classes: int = 7):
    """A real torchvision VisionTransformer, tiny, with a non-zero head (torchvision zeroes it)."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=4, hidden_dim=64,
                              mlp_dim=128, num_classes=num_classes)
    torch.nn.init.normal_(model.heads.head.weight, std=0.2)
    return model


def tiny_vit_checkpoint(stem: str, seed: int) -> tuple[str, bytes]:
    """(file name with its sha256 prefix, as torch.hub names files; bytes) of a tiny ViT state dict."""
    import hashlib
    import io

    import torch

    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(build_tiny_vit().state_dict(), buf)
    data = buf.getvalue()
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth", data


def random_png(path, shape=(90, 120, 3), seed: int = 5):
    """A random uint8 image of `shape` saved as PNG at `path`; returns the path."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path
