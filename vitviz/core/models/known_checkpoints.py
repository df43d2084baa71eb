"""ViTs known by name whose weights come as a checkpoint file (DINO, DeiT, MAE), and the shapes of
torchvision's ViTs: head counts leave no trace in a state dict, so names are how we know them.

Plain data, no torch: imported when the registry is listed.
"""
from __future__ import annotations

from .registry import ModelSpec, Preprocess, register

# patch size, depth, heads, width, MLP width: what fixes a ViT's shape beyond the tokens and the head
ARCH_KEYS = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")


def _arch(patch: int, layers: int, heads: int, width: int) -> dict:
    return dict(zip(ARCH_KEYS, (patch, layers, heads, width, 4 * width)))


# torchvision's builders, by name
TORCHVISION_VIT_ARCH: dict[str, dict] = {
    "vit_b_16": _arch(16, 12, 12, 768),
    "vit_b_32": _arch(32, 12, 12, 768),
    "vit_l_16": _arch(16, 24, 16, 1024),
    "vit_l_32": _arch(32, 24, 16, 1024),
    "vit_h_14": _arch(14, 32, 16, 1280),
}

TOKEN_VIT_BUILDER = "vitviz.core.models.vit_tokens:build_token_vit"
IMAGENET_NAMES = "torchvision.models._meta:_IMAGENET_CATEGORIES"  # offline, shipped with torchvision

# DINO, DeiT and MAE evaluate at 224 after resizing the short side to 256, with ImageNet statistics.
_EVAL_224 = Preprocess("center_crop", 224, resize=256)


def _known(name: str, label: str, arch: dict, classes: str = "none") -> ModelSpec:
    return ModelSpec(name, "vit", label, TOKEN_VIT_BUILDER, _EVAL_224, weights=None,
                     builder_kwargs=dict(arch), classes=classes, group="ViT checkpoints (DINO, DeiT, MAE)")


KNOWN_CHECKPOINT_SPECS: list[ModelSpec] = [
    _known("dino_vits8", "DINO ViT-S/8", _arch(8, 12, 6, 384)),
    _known("dino_vits16", "DINO ViT-S/16", _arch(16, 12, 6, 384)),
    _known("dino_vitb8", "DINO ViT-B/8", _arch(8, 12, 12, 768)),
    _known("dino_vitb16", "DINO ViT-B/16", _arch(16, 12, 12, 768)),
    _known("deit_tiny_distilled", "DeiT-Ti/16 distilled", _arch(16, 12, 3, 192), IMAGENET_NAMES),
    _known("deit_small", "DeiT-S/16", _arch(16, 12, 6, 384), IMAGENET_NAMES),
    _known("mae_vit_base", "MAE ViT-B/16", _arch(16, 12, 12, 768)),
]

for _spec in KNOWN_CHECKPOINT_SPECS:
    register(_spec)


def arch_of(spec: ModelSpec) -> dict | None:
    """The ViT shape a spec stands for (torchvision builder or TokenViT kwargs), or None."""
    if spec.family != "vit":
        return None
    if spec.builder in TORCHVISION_VIT_ARCH:
        return dict(TORCHVISION_VIT_ARCH[spec.builder])
    if spec.builder == TOKEN_VIT_BUILDER and all(k in spec.builder_kwargs for k in ARCH_KEYS):
        return {k: spec.builder_kwargs[k] for k in ARCH_KEYS}
    return None
