"""timm's ViTs (ViT, DeiT, DINO, register ViTs...) run as TokenViT with their weights mapped.

timm is used to know the model (its architecture and pretrained config: input size, crop,
interpolation, mean/std, where its weights are published); the weights themselves come from timm's
repository in the Hugging Face hub cache (`timm/NAME.TAG`) or from the torch hub folder, or from a
checkpoint file, and are mapped by timm_vit onto TokenViT. Running torchvision's attention instead
of timm's means capture does not depend on `timm.layers.use_fused_attn()`: timm's fused path
(F.scaled_dot_product_attention) returns no weights, which is how hooks on timm models capture
nothing.
"""
from __future__ import annotations

import math
from pathlib import Path

from .errors import CheckpointError
from .hf_cache import HubCacheError
from .registry import ModelSpec, Preprocess

TIMM_GROUP = "timm"
_INSTALL = "pip install 'vitviz[timm]'"


def _timm():
    try:
        import timm
    except ModuleNotFoundError:
        raise HubCacheError(f"timm models need timm: {_INSTALL}") from None
    return timm


def _unsupported(model) -> str | None:
    """Why TokenViT cannot run this timm model exactly, or None."""
    from torch import nn

    if type(model).__name__ not in ("VisionTransformer", "VisionTransformerDistilled"):
        return f"{type(model).__name__} is not a plain timm VisionTransformer"
    if not isinstance(model.norm_pre, nn.Identity):
        return "it has a pre-norm (norm_pre) before the blocks"
    if getattr(model, "cls_token", None) is None:
        return "it has no class token"
    if model.global_pool not in ("token", "avg"):
        return f"global_pool {model.global_pool!r}"
    b = model.blocks[0]
    if type(b).__name__ != "Block":
        return f"its blocks are {type(b).__name__}"
    if not isinstance(b.attn.q_norm, nn.Identity) or not isinstance(getattr(b.attn, "norm", nn.Identity()), nn.Identity):
        return "it normalises q/k or the attention output"
    if type(b.mlp).__name__ != "Mlp" or not isinstance(b.mlp.act, nn.GELU) or b.mlp.act.approximate != "none":
        return "its MLP is not Linear-GELU-Linear"
    if not isinstance(b.mlp.norm, nn.Identity):
        return "its MLP has a norm"
    for norm in (b.norm1, b.norm2):
        if not isinstance(norm, nn.LayerNorm) or abs(norm.eps - 1e-6) > 1e-12:
            return "its norms are not LayerNorm(eps=1e-6)"
    if getattr(model, "attn_pool", None) is not None:
        return "it pools with attention (MAP head)"
    return None


def _preprocess(pcfg) -> Preprocess:
    """timm's eval transform (timm.data.transforms_factory, crop_mode "center"): the short side to
    floor(size / crop_pct), then a size x size center crop, with the config's interpolation."""
    size = int(pcfg.input_size[-1])
    if pcfg.input_size[-2] != size:
        raise HubCacheError(f"timm input size {pcfg.input_size}: vitviz needs a square input")
    crop_pct = pcfg.crop_pct or 0.875
    resample = pcfg.interpolation if pcfg.interpolation in ("bilinear", "bicubic", "nearest") else "bicubic"
    if getattr(pcfg, "crop_mode", "center") not in (None, "center"):
        raise HubCacheError(f"timm crop_mode {pcfg.crop_mode!r}: vitviz reproduces 'center' only")
    return Preprocess("center_crop", size, resize=math.floor(size / crop_pct), mean=tuple(pcfg.mean),
                      std=tuple(pcfg.std), resample=resample)


def timm_spec(name: str) -> ModelSpec:
    """The spec of timm model `name` (architecture, optionally ".tag"), built as a TokenViT."""
    from . import known_checkpoints as known

    timm = _timm()
    arch, _, tag = name.partition(".")
    if arch not in timm.list_models():
        raise HubCacheError(f"timm has no model {arch!r} (timm.list_models() lists them)")
    try:
        pcfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        pcfg = None
    if pcfg is None:
        raise HubCacheError(f"timm has no pretrained config {name!r}")
    model = timm.create_model(name, pretrained=False, num_classes=pcfg.num_classes or 0)
    why = _unsupported(model)
    if why:
        raise HubCacheError(f"timm:{name} cannot be opened by vitviz: {why}. vitviz runs timm's plain "
                            "ViTs (ViT, DeiT, DINO, register ViTs) as torchvision ViTs.")
    kw = dict(patch_size=int(model.patch_embed.patch_size[0]), num_layers=len(model.blocks),
              num_heads=int(model.blocks[0].attn.num_heads), hidden_dim=int(model.embed_dim),
              mlp_dim=int(model.blocks[0].mlp.fc1.out_features))
    full = name if tag else f"{arch}.{pcfg.tag}" if pcfg.tag else arch
    return ModelSpec(f"timm:{name}", "vit", f"timm {full}", known.TOKEN_VIT_BUILDER, _preprocess(pcfg),
                     weights=None, builder_kwargs=kw,
                     classes=known.IMAGENET_NAMES if pcfg.num_classes == 1000 else "none",
                     group=TIMM_GROUP, source="timm")


def _pretrained_cfg(spec: ModelSpec):
    return _timm().models.get_pretrained_cfg(spec.name[len("timm:"):])


def timm_weights_file(spec: ModelSpec) -> Path | None:
    """The model's weights on disk: timm's hub repository in the HF cache, else timm's download in
    the torch hub folder. Offline."""
    from .hf_cache import snapshot_dir, weights_file
    from .hub_dirs import hub_checkpoint_dir

    pcfg = _pretrained_cfg(spec)
    if pcfg.hf_hub_id:
        repo, _, rev = pcfg.hf_hub_id.partition("@")
        snap = snapshot_dir(repo, rev or "main")
        found = weights_file(snap) if snap is not None else None
        if found is not None:
            return found
    if pcfg.url and not pcfg.url.endswith(".npz"):
        path = hub_checkpoint_dir() / pcfg.url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
    return None


def timm_pretrained_state(spec: ModelSpec, download, notes: list[str]):
    """(state in timm's keys or None, source label) for weights="pretrained"."""
    from .state_files import read_state_dict

    path = timm_weights_file(spec)
    pcfg = _pretrained_cfg(spec)
    if path is None:  # vitviz does not fetch hub repositories itself (yet)
        where = f"the hub cache ({pcfg.hf_hub_id})" if pcfg.hf_hub_id else "the torch hub folder"
        how = (f"`huggingface-cli download {pcfg.hf_hub_id}`" if pcfg.hf_hub_id else
               f"timm.create_model({spec.name[5:]!r}, pretrained=True)")
        notes.append(f"Pretrained weights for {spec.label} are not in {where}; running UNTRAINED random "
                     f"weights. Fetch them with {how}.")
        return None, None
    if path.name.endswith(".index.json"):
        raise CheckpointError(f"{path}: sharded timm weights are not supported")
    return read_state_dict(path), spec.label
