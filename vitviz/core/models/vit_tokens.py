"""A torchvision VisionTransformer that also runs DINO, DeiT, MAE and register-token checkpoints.

torchvision's ViT has exactly one prefix token (the class token), a head and a fixed input size.
TokenViT keeps its encoder layers untouched (so capture hooks on `encoder.layers[i].self_attention`
work as for any torchvision ViT) and adds what those checkpoints need:
  - a distillation token (DeiT) and register tokens, placed after the class token:
    [cls, dist?, reg * R, patches];
  - no head (DINO / MAE pretraining): forward returns None;
  - mean pooling over patch tokens with `fc_norm` (MAE fine-tuned), and the DeiT two-head average;
  - position embeddings resampled (bicubic) when the input grid differs from the stored one.

Its state-dict keys are torchvision's, plus `dist_token`, `reg_tokens`, `head_dist.*`, `fc_norm.*`.
`encoder.pos_embedding` always covers every token; prefix tokens that had no position embedding
in their checkpoint (timm's no_embed_class, DINOv2 registers) get zero rows, which adds nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer


class TokenViT(VisionTransformer):
    def __init__(self, *, image_size: int = 224, patch_size: int, num_layers: int, num_heads: int,
                 hidden_dim: int, mlp_dim: int, num_classes: int = 0, dist_token: bool = False,
                 reg_tokens: int = 0, global_pool: str = "token", fc_norm: bool = False,
                 final_norm: bool = True) -> None:
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', not {global_pool!r}")
        super().__init__(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim,
                         num_classes=max(num_classes, 1))
        self.num_classes = num_classes
        self.num_prefix_tokens = 1 + int(dist_token) + reg_tokens
        grid = image_size // patch_size
        self.seq_length = self.num_prefix_tokens + grid * grid
        self.encoder.pos_embedding = nn.Parameter(torch.empty(1, self.seq_length, hidden_dim).normal_(std=0.02))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, hidden_dim)) if dist_token else None
        self.reg_tokens = nn.Parameter(torch.zeros(1, reg_tokens, hidden_dim)) if reg_tokens else None
        if not final_norm:  # MAE/timm with fc_norm: the encoder's last LayerNorm moves after pooling
            self.encoder.ln = nn.Identity()
        self.fc_norm = nn.LayerNorm(hidden_dim, eps=1e-6) if fc_norm else nn.Identity()
        self.global_pool = global_pool
        if num_classes == 0:
            self.heads = nn.Sequential()  # no parameters: a headless (feature) checkpoint
        self.head_dist = nn.Linear(hidden_dim, num_classes) if dist_token and num_classes else None

    @property
    def grid_size(self) -> int:
        """Patches per side of the stored position embedding."""
        return math.isqrt(self.seq_length - self.num_prefix_tokens)

    def forward(self, x: Tensor) -> Tensor | None:
        n = x.shape[0]
        # (n, 3, h, w) -> (n, hidden_dim, n_h, n_w): any size; the grid is what the conv yields
        x = self.conv_proj(x)
        n_h, n_w = x.shape[-2:]
        # (n, hidden_dim, n_h, n_w) -> (n, n_h * n_w, hidden_dim)
        x = x.flatten(2).transpose(1, 2)
        prefix = [t for t in (self.class_token, self.dist_token, self.reg_tokens) if t is not None]
        x = torch.cat([t.expand(n, -1, -1) for t in prefix] + [x], dim=1)
        x = x + self._pos_embedding(n_h, n_w)
        enc = self.encoder
        x = enc.ln(enc.layers(enc.dropout(x)))
        return self._classify(x)

    def _pos_embedding(self, n_h: int, n_w: int) -> Tensor:
        pos = self.encoder.pos_embedding
        if (n_h, n_w) == (self.grid_size, self.grid_size):
            return pos
        return resample_pos_embedding(pos, self.num_prefix_tokens, (self.grid_size, self.grid_size), (n_h, n_w))

    def _classify(self, x: Tensor) -> Tensor | None:
        if self.num_classes == 0:
            return None
        if self.global_pool == "avg":
            return self.heads(self.fc_norm(x[:, self.num_prefix_tokens:].mean(dim=1)))
        logits = self.heads(self.fc_norm(x[:, 0]))
        if self.head_dist is not None:  # DeiT at inference: the mean of class and distillation heads
            logits = (logits + self.head_dist(self.fc_norm(x[:, 1]))) / 2
        return logits


def resample_pos_embedding(pos: Tensor, num_prefix: int, old_grid: tuple[int, int],
                           new_grid: tuple[int, int]) -> Tensor:
    """(1, num_prefix + old_h*old_w, d) -> (1, num_prefix + new_h*new_w, d): the patch part
    interpolated bicubically over the 2-D grid, the prefix rows kept as they are."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    d = pos.shape[-1]
    head, patches = pos[:, :num_prefix], pos[:, num_prefix:]
    # (1, old_h*old_w, d) -> (1, d, old_h, old_w)
    patches = patches.reshape(1, *old_grid, d).permute(0, 3, 1, 2).float()
    shrinking = new_grid[0] < old_grid[0] or new_grid[1] < old_grid[1]
    patches = F.interpolate(patches, size=tuple(new_grid), mode="bicubic", align_corners=False,
                            antialias=shrinking)
    # (1, d, new_h, new_w) -> (1, new_h*new_w, d)
    patches = patches.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d).to(pos.dtype)
    return torch.cat([head, patches], dim=1)


def build_token_vit(**config) -> TokenViT:
    """The registry's builder ("vitviz.core.models.vit_tokens:build_token_vit"); keyword arguments
    as TokenViT's."""
    return TokenViT(**config)
