"""Hugging Face ViT, DeiT, DINO (ViTModel) and DINOv2 (with or without registers) as TokenViT.

The weights are mapped, not wrapped: HF keys -> timm's names -> TokenViT's (timm_vit.to_token_vit,
which also folds DINOv2's LayerScale into the output projections). The model that runs is then a
torchvision VisionTransformer, so capture is the same exact hook as for every other ViT and no
transformers code runs (faster, and nothing in transformers' attention implementations can turn
capture off). What transformers does that TokenViT does not by default is set here: its LayerNorm
epsilon (1e-12 for ViT/DeiT), its position-embedding interpolation (bicubic; antialiased only for
DINOv2 with registers), DeiT without a distillation head, DINOv2's classifier on [cls, mean patch].
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CheckpointError
from .key_maps import weight_and_bias
from .vit_tokens import TokenViT

VIT_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers")
_BASE_PREFIXES = ("vit.", "deit.", "dinov2.", "dinov2_with_registers.")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_LAYER_KEYS = weight_and_bias({  # HF layer suffix -> timm block suffix
    "attention.output.dense": "attn.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
    "norm1": "norm1", "norm2": "norm2", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}, {
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
})
_TOP_KEYS = weight_and_bias({
    "embeddings.patch_embeddings.projection": "patch_embed.proj", "layernorm": "norm",
    "classifier": "head", "cls_classifier": "head", "distillation_classifier": "head_dist",
}, {
    "embeddings.cls_token": "cls_token", "embeddings.distillation_token": "dist_token",
    "embeddings.register_tokens": "register_tokens", "embeddings.position_embeddings": "pos_embed",
})
_UNUSED = re.compile(r"^(embeddings\.mask_token|pooler\..*)$")  # masked pretraining; ViTModel's pooler


class HFTokenViT(TokenViT):
    """TokenViT with the pooling choices of transformers' heads."""

    def __init__(self, *, pool: str = "token", dist_head: bool = True, layer_norm_eps: float = 1e-6,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if pool not in ("token", "token+mean"):
            raise ValueError(f"pool must be 'token' or 'token+mean', not {pool!r}")
        self.pool = pool
        if not dist_head:  # DeiTForImageClassification: the distillation token, but one head
            self.head_dist = None
        if pool == "token+mean" and self.num_classes:  # Dinov2ForImageClassification
            self.heads = nn.Sequential()
            self.heads.add_module("head", nn.Linear(2 * self.hidden_dim, self.num_classes))
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = layer_norm_eps

    def _classify(self, x: Tensor) -> Tensor | None:
        if self.pool == "token+mean" and self.num_classes:
            return self.heads(torch.cat([x[:, 0], x[:, self.num_prefix_tokens:].mean(dim=1)], dim=1))
        return super()._classify(x)


def _get(cfg: dict, key: str, default=None):
    value = cfg.get(key, default)
    if value is None:
        raise CheckpointError(f"config.json has no {key!r}")
    return value


def build_kwargs(cfg: dict, input_size: int) -> dict:
    """HFTokenViT keyword arguments for a transformers config (config.json as a dict)."""
    mt = cfg.get("model_type")
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"{mt} with hidden_act {act!r}: vitviz runs the exact GELU only")
    if cfg.get("use_swiglu_ffn"):
        raise CheckpointError("DINOv2 with a SwiGLU MLP (the giant model) is not supported")
    if cfg.get("num_channels", 3) != 3:
        raise CheckpointError(f"{cfg.get('num_channels')}-channel input: vitviz feeds RGB images")
    width = _get(cfg, "hidden_size")
    mlp = int(width * cfg["mlp_ratio"]) if mt.startswith("dinov2") else _get(cfg, "intermediate_size")
    archs = cfg.get("architectures") or []
    classify = any("ForImageClassification" in a for a in archs)
    labels = cfg.get("id2label") or {}
    return dict(
        image_size=input_size, patch_size=_get(cfg, "patch_size"), num_layers=_get(cfg, "num_hidden_layers"),
        num_heads=_get(cfg, "num_attention_heads"), hidden_dim=width, mlp_dim=mlp,
        num_classes=len(labels) if classify else 0, dist_token=mt == "deit",
        reg_tokens=int(cfg.get("num_register_tokens", 0)) if mt == "dinov2_with_registers" else 0,
        pool="token+mean" if mt.startswith("dinov2") else "token",
        dist_head=any("WithTeacher" in a for a in archs),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)))


def build(cfg: dict, input_size: int) -> HFTokenViT:
    return HFTokenViT(**build_kwargs(cfg, input_size))


def to_timm_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' (saved) key names -> timm's. q, k and v are stacked into one qkv."""
    base = next((p for p in _BASE_PREFIXES if any(k.startswith(p + "embeddings.") for k in state)), "")
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        k = key[len(base):] if base and key.startswith(base) else key
        if _UNUSED.match(k):
            continue
        if m := _LAYER.match(k):
            i, rest = m.groups()
            if q := re.match(r"attention\.attention\.(query|key|value)\.(weight|bias)$", rest):
                qkv.setdefault(f"blocks.{i}.attn.qkv.{q.group(2)}", {})[q.group(1)] = value
                continue
            if rest in _LAYER_KEYS:
                out[f"blocks.{i}.{_LAYER_KEYS[rest]}"] = value
                continue
        out[_TOP_KEYS.get(k, key)] = value  # unknown keys keep their name: strict loading lists them
    for name, parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"{name}: the checkpoint lacks {sorted({'query', 'key', 'value'} - set(parts))}")
        out[name] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def convert_state(cfg: dict, state: dict[str, Tensor], input_size: int) -> dict[str, Tensor]:
    """The checkpoint in HFTokenViT's keys, its position embeddings interpolated to the input grid
    the way transformers interpolates them (so the converted model computes what the HF one does)."""
    from .timm_vit import LayoutError, read_layout, to_token_vit

    timm = to_timm_keys(state)
    patch = _get(cfg, "patch_size")
    grid = (input_size // patch,) * 2
    pos = timm["pos_embed"]
    side = round((pos.shape[1] - (2 if cfg.get("model_type") == "deit" else 1)) ** 0.5)
    if (side, side) != grid:
        prefix = pos.shape[1] - side * side
        antialias = cfg.get("model_type") == "dinov2_with_registers"
        timm["pos_embed"] = interpolate_pos(pos, prefix, side, grid, antialias)
    try:
        layout = read_layout(timm)
    except LayoutError as exc:
        raise CheckpointError(str(exc)) from None
    return to_token_vit(timm, layout, grid)


def interpolate_pos(pos: Tensor, prefix: int, side: int, grid: tuple[int, int], antialias: bool) -> Tensor:
    """transformers' interpolate_pos_encoding: the patch part bicubic in float32 to `grid`."""
    d = pos.shape[-1]
    # (1, side*side, d) -> (1, d, side, side)
    patches = pos[:, prefix:].reshape(1, side, side, d).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False, antialias=antialias)
    # (1, d, h, w) -> (1, h*w, d)
    patches = patches.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d)
    return torch.cat([pos[:, :prefix], patches], dim=1)
