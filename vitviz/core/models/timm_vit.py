"""timm-style ViT checkpoints (DINO, DeiT, MAE, timm, DINOv2) read onto TokenViT's keys.

Their layout: `cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}`, `norm`, `head`; optionally `dist_token` + `head_dist` (DeiT distilled),
`reg_token` (timm) or `register_tokens` (DINOv2), `fc_norm` (MAE fine-tuned, mean pooling) and
LayerScale `blocks.N.ls1.gamma` / `ls2.gamma` (DINOv2), which is folded into the output
projections: gamma * (W a + b) == (gamma W) a + gamma b, so torchvision's layers run it unchanged.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .vit_tokens import resample_pos_embedding
from .key_maps import weight_and_bias

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# timm block suffix -> torchvision EncoderBlock suffix (qkv stacks q, k, v as in_proj does)
_BLOCK_KEYS = weight_and_bias({
    "norm1": "ln_1", "attn.proj": "self_attention.out_proj", "norm2": "ln_2", "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
}, {
    "attn.qkv.weight": "self_attention.in_proj_weight", "attn.qkv.bias": "self_attention.in_proj_bias",
})
_TOP_KEYS = weight_and_bias({
    "patch_embed.proj": "conv_proj", "norm": "encoder.ln", "fc_norm": "fc_norm", "head": "heads.head",
    "head_dist": "head_dist",
}, {
    "cls_token": "class_token", "dist_token": "dist_token", "reg_token": "reg_tokens",
    "register_tokens": "reg_tokens",
})
# Parts of training checkpoints that inference never uses.
_TRAINING_ONLY = re.compile(r"^(mask_token|decoder_.*|decoder\..*|head\.(mlp|last_layer)\..*)$")


class LayoutError(ValueError):
    """The state dict is not a ViT in timm's layout, or uses a part TokenViT cannot run."""


def is_timm_vit(state: dict) -> bool:
    return "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in state)


@dataclass
class TimmLayout:
    """What the keys and shapes of a timm-style checkpoint say about the model."""

    patch_size: int
    num_layers: int
    hidden_dim: int
    mlp_dim: int
    num_classes: int  # 0: no head
    dist_token: bool
    reg_tokens: int
    pos_prefix: int  # leading prefix tokens with their own position embedding (all, 1 or 0)
    grid: tuple[int, int]  # patch grid of the stored position embedding
    global_pool: str  # "token" | "avg"
    fc_norm: bool
    final_norm: bool
    layer_scale: bool
    dropped: list[str] = field(default_factory=list)  # training-only keys left out

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + int(self.dist_token) + self.reg_tokens

    def token_kwargs(self) -> dict:
        """TokenViT keyword arguments beyond the architecture (tokens and head)."""
        return dict(num_classes=self.num_classes, dist_token=self.dist_token, reg_tokens=self.reg_tokens,
                    global_pool=self.global_pool, fc_norm=self.fc_norm, final_norm=self.final_norm)


def read_layout(state: dict) -> TimmLayout:
    if not is_timm_vit(state):
        raise LayoutError("not a timm-style ViT (no patch_embed.proj.weight / blocks.N.*)")
    for key in ("cls_token", "pos_embed", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            what = {"cls_token": "no class token (global-pool-only ViTs are not supported)",
                    "pos_embed": "no learned position embedding (pos_embed)",
                    "blocks.0.mlp.fc1.weight": "an MLP other than fc1/fc2 (e.g. SwiGLU)"}[key]
            raise LayoutError(f"this ViT has {what}")
    proj = state["patch_embed.proj.weight"]  # (width, 3, p, p)
    if proj.dim() != 4 or proj.shape[1] != 3 or proj.shape[2] != proj.shape[3]:
        raise LayoutError(f"unsupported patch embedding of shape {tuple(proj.shape)}")
    width = proj.shape[0]
    depth = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    dist = "dist_token" in state
    regs = state.get("reg_token", state.get("register_tokens"))
    n_reg = regs.shape[1] if regs is not None else 0
    prefix = 1 + int(dist) + n_reg
    seq = state["pos_embed"].shape[1]
    # Which prefix tokens carry a position embedding is not recorded: the one that leaves a square
    # patch grid is it (all: classic timm/DeiT; 1: DINOv2 registers; 0: timm no_embed_class).
    for k in dict.fromkeys((prefix, 1, 0)):
        side = math.isqrt(max(seq - k, 0))
        if side > 0 and side * side == seq - k:
            pos_prefix, grid = k, (side, side)
            break
    else:
        raise LayoutError(f"pos_embed has {seq} positions: not {prefix}, 1 or 0 prefix tokens plus a "
                          "square patch grid")
    has_head = "head.weight" in state
    fc_norm, final_norm = "fc_norm.weight" in state, "norm.weight" in state
    return TimmLayout(
        patch_size=proj.shape[-1], num_layers=depth, hidden_dim=width,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0],
        num_classes=state["head.weight"].shape[0] if has_head else 0,
        dist_token=dist, reg_tokens=n_reg, pos_prefix=pos_prefix, grid=grid,
        global_pool="avg" if fc_norm and not final_norm else "token",
        fc_norm=fc_norm, final_norm=final_norm,
        layer_scale="blocks.0.ls1.gamma" in state,
        dropped=sorted(k for k in state if _TRAINING_ONLY.match(k)))


def to_token_vit(state: dict, layout: TimmLayout, grid: tuple[int, int]) -> dict[str, Tensor]:
    """The state dict in TokenViT's keys, position embeddings laid out for `grid` patches. Keys with
    no counterpart are kept under their own name, so a strict load names them as unexpected."""
    out: dict[str, Tensor] = {}
    gammas: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in layout.dropped or key == "pos_embed":
            continue
        if m := _BLOCK.match(key):
            i, rest = m.groups()
            if rest in ("ls1.gamma", "ls2.gamma"):
                gammas[f"{i}.{rest[:3]}"] = value
                continue
            if rest in _BLOCK_KEYS:
                out[f"encoder.layers.encoder_layer_{i}.{_BLOCK_KEYS[rest]}"] = value
                continue
        out[_TOP_KEYS.get(key, key)] = value
    for i in range(layout.num_layers):
        layer = f"encoder.layers.encoder_layer_{i}."
        bias = layer + "self_attention.in_proj_bias"
        if bias not in out and layer + "self_attention.in_proj_weight" in out:  # qkv_bias=False
            out[bias] = torch.zeros(3 * layout.hidden_dim)
        for ls, proj in (("ls1", "self_attention.out_proj"), ("ls2", "mlp.3")):
            gamma = gammas.pop(f"{i}.{ls}", None)
            if gamma is not None and layer + proj + ".weight" in out:
                out[layer + proj + ".weight"] = gamma[:, None] * out[layer + proj + ".weight"]
                out[layer + proj + ".bias"] = gamma * out[layer + proj + ".bias"]
    for name, gamma in gammas.items():  # LayerScale without its projection: let strict loading say so
        i, ls = name.split(".")
        out[f"blocks.{i}.{ls}.gamma"] = gamma
    out["encoder.pos_embedding"] = full_pos_embedding(state["pos_embed"], layout, grid)
    return out


def full_pos_embedding(pos: Tensor, layout: TimmLayout, grid: tuple[int, int]) -> Tensor:
    """(1, pos_prefix + grid, d) -> (1, all prefix tokens + new grid, d), zero rows for the prefix
    tokens that had none (adding zero is what their models do: nothing)."""
    pos = resample_pos_embedding(pos, layout.pos_prefix, layout.grid, grid)
    missing = layout.num_prefix_tokens - layout.pos_prefix
    if missing:
        pad = pos.new_zeros(1, missing, pos.shape[-1])
        pos = torch.cat([pos[:, :layout.pos_prefix], pad, pos[:, layout.pos_prefix:]], dim=1)
    return pos
