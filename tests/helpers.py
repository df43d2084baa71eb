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
