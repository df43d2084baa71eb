"""The demo models' architectures: small torchvision ViT and Swin for the shapes scenes.

The builders take no arguments that change the shape of the model, so the bundled weights in
resources/demo/ always fit (see vitviz.demo.specs). Sizes are chosen to train on a CPU
in well under an hour and still show real, readable attention:

- ViT: 64 px input, patch 8 -> an 8 x 8 token grid (+ class token), 4 layers x 4 heads. The patch
  embedding is torchvision's convolutional stem option (three 3x3 stride-2 convolutions, then a 1x1
  projection, with GroupNorm; "Early convolutions help transformers see better", Xiao et al. 2021) instead of one
  8x8 convolution: it trains far faster from scratch on a CPU budget; tokens are still 8x8 px.
- Swin: 64 px input, patch 4 -> stages of 16 x 16, 8 x 8 and 4 x 4 tokens with 4 x 4 windows,
  so every stage tiles exactly (4 x 4, 2 x 2, then 1 window; torchvision drops the shift there).

64 px rather than 96: on the shared 2-core CPU the models see twice as many training scenes per
second, and the scenes' shapes (19-32 px across at 64 px) stay clearly legible.
"""
from __future__ import annotations

from vitviz.demo.scenes import CLASSES

NUM_CLASSES = len(CLASSES)

VIT_IMAGE_SIZE = 64
VIT_CONFIG = dict(image_size=VIT_IMAGE_SIZE, patch_size=8, num_layers=4, num_heads=4,
                  hidden_dim=96, mlp_dim=192)

SWIN_IMAGE_SIZE = 64
SWIN_CONFIG = dict(patch_size=[4, 4], embed_dim=32, depths=[2, 2, 2], num_heads=[2, 4, 8],
                   window_size=[4, 4], stochastic_depth_prob=0.1)


VIT_STEM = ((16, 3, 2), (32, 3, 2), (64, 3, 2))  # (out_channels, kernel, stride): 64 -> 32 -> 16 -> 8


# d_model 128 in 4 heads of 32; 3 + 3 layers; 12 queries for at most 6 objects per scene.
DETR_IMAGE_SIZE = 128
DETR_CONFIG = dict(backbone="small_cnn", d_model=128, nheads=4, enc_layers=3, dec_layers=3,
                   dim_feedforward=256, dropout=0.0, num_queries=12)


def build_demo_detr(num_classes: int = NUM_CLASSES):
    """vitviz's DETR (official layout) with the small stride-8 CNN backbone: 128 px -> 16 x 16 cells."""
    from vitviz.core.models.detr import DetrConfig, build_detr

    return build_detr(DetrConfig(num_classes=num_classes, **DETR_CONFIG))


def build_demo_vit(num_classes: int = NUM_CLASSES):
    """torchvision VisionTransformer, 64 px, patch 8 (conv stem), 4 layers x 4 heads, hidden 96."""
    from functools import partial

    from torch import nn
    from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer

    # GroupNorm, not torchvision's default BatchNorm: no running statistics, so one image's
    # tokens never depend on training-batch statistics (and no num_batches_tracked buffers).
    norm = partial(nn.GroupNorm, 4)
    stem = [ConvStemConfig(out_channels=c, kernel_size=k, stride=s, norm_layer=norm) for c, k, s in VIT_STEM]
    # (n, 3, 64, 64) -> stem (n, 96, 8, 8) -> (n, 64 + 1, 96) tokens -> (n, num_classes)
    return VisionTransformer(num_classes=num_classes, conv_stem_configs=stem, **VIT_CONFIG)


def build_demo_swin(num_classes: int = NUM_CLASSES):
    """torchvision SwinTransformer (v1), 64 px, patch 4, window 4, three stages of depth 2."""
    from torchvision.models.swin_transformer import SwinTransformer

    # (n, 3, 64, 64) -> (n, 16, 16, 32) -> (n, 8, 8, 64) -> (n, 4, 4, 128) -> (n, num_classes)
    return SwinTransformer(num_classes=num_classes, **SWIN_CONFIG)
