"""Where checkpoints torchvision does not ship are published, by the model name they load as.

Plain data, read by weights (is it cached?) and download (fetch it).
"""
from __future__ import annotations

# Checkpoints torchvision does not ship, by the model name they load as. The file name is the URL's
# last part; a hex part after the last '-' is the start of the file's sha256 (torch.hub's convention).
CHECKPOINT_URLS: dict[str, str] = {
    # facebookresearch/detr, COCO detection (hubconf.py)
    "detr_resnet50": "https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth",
    "detr_resnet50_dc5": "https://dl.fbaipublicfiles.com/detr/detr-r50-dc5-f0fb7ef5.pth",
    "detr_resnet101": "https://dl.fbaipublicfiles.com/detr/detr-r101-2c7b67e5.pth",
    "detr_resnet101_dc5": "https://dl.fbaipublicfiles.com/detr/detr-r101-dc5-a2e86def.pth",
    # facebookresearch/dino, self-supervised backbones (no head, no hash in the name)
    "dino_vits8": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
    "dino_vits16": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    "dino_vitb8": "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
    "dino_vitb16": "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    # facebookresearch/deit, ImageNet-1k classifiers
    "deit_tiny_distilled": "https://dl.fbaipublicfiles.com/deit/deit_tiny_distilled_patch16_224-b40b3cf7.pth",
    "deit_small": "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth",
    # facebookresearch/mae, pretrained encoder (no head)
    "mae_vit_base": "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
}
