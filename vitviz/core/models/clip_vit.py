"""CLIP image towers (open_clip's VisionTransformer, transformers' CLIPVisionModel) as TokenViT.

As for the other hub models, the weights are mapped, not wrapped: the tower runs as a torchvision
VisionTransformer, so attention capture and the gradient methods are the same exact hooks as for
every ViT, whatever attention kernel the library would pick. What CLIP's tower adds to a plain ViT
is set here: a patch embedding without bias, a LayerNorm before the blocks (ln_pre /
pre_layrnorm), LayerNorm eps 1e-5, QuickGELU for OpenAI-trained weights, and the projection of the
normalised class token into the joint image-text space. forward() returns None (the tower has no
classes); image_embedding() is what the library's encode_image / get_image_features returns.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .vit_tokens import TokenViT, resample_pos_embedding


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's activation (open_clip's QuickGELU, HF's "quick_gelu")."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class CLIPTokenViT(TokenViT):
    def __init__(self, *, embed_dim: int, quick_gelu: bool = False, layer_norm_eps: float = 1e-5,
                 **kwargs) -> None:
        super().__init__(num_classes=0, **kwargs)
        width = self.hidden_dim
        self.conv_proj = nn.Conv2d(3, width, self.patch_size, self.patch_size, bias=False)
        self.ln_pre = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        for layer in self.encoder.layers:
            if quick_gelu:
                layer.mlp[1] = QuickGELU()  # MLPBlock: Linear, GELU, Dropout, Linear, Dropout
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = layer_norm_eps

    def tokens(self, x: Tensor) -> Tensor:
        """(n, 3, h, w) -> (n, 1 + n_h * n_w, width): every token after the last LayerNorm."""
        n = x.shape[0]
        x = self.conv_proj(x)  # (n, width, n_h, n_w)
        n_h, n_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (n, n_h * n_w, width)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln_pre(x + self._pos_embedding(n_h, n_w))
        return self.encoder.ln(self.encoder.layers(x))

    def image_embedding(self, x: Tensor) -> Tensor:
        """(n, 3, h, w) -> (n, embed_dim), not normalised: the library's encode_image."""
        return self.proj(self.tokens(x)[:, 0])

    def forward(self, x: Tensor) -> None:
        self.tokens(x)  # the attention hooks see every layer; there are no class scores
        return None


def build(*, image_size: int, **kwargs) -> CLIPTokenViT:
    """The registry's builder ("vitviz.core.models.clip_vit:build"); clip_specs fills the kwargs."""
    kwargs.pop("weights_file", None)
    kwargs.pop("library", None)
    kwargs.pop("arch", None)
    return CLIPTokenViT(image_size=image_size, **kwargs)


# --- weights: the two libraries' keys -> CLIPTokenViT's ---------------------------------------
_OPEN_CLIP_LAYER = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$")
_OPEN_CLIP_LAYER_KEYS = {
    "ln_1": "ln_1", "ln_2": "ln_2", "attn.out_proj": "self_attention.out_proj", "mlp.c_fc": "mlp.0",
    "mlp.c_proj": "mlp.3",
}
_HF_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER_KEYS = {
    "layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "self_attention.out_proj",
    "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3",
}


def _layer_key(i: str, rest: str, table: dict) -> str | None:
    base, _, param = rest.rpartition(".")
    if base in table and param in ("weight", "bias"):
        return f"encoder.layers.encoder_layer_{i}.{table[base]}.{param}"
    return None


def from_open_clip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """open_clip's CLIP state dict (visual.* is the image tower; the text keys are left out)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith("visual."):
            continue
        if m := _OPEN_CLIP_LAYER.match(key):
            i, rest = m.groups()
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                out[f"encoder.layers.encoder_layer_{i}.self_attention.{rest[5:]}"] = value
                continue
            new = _layer_key(i, rest, _OPEN_CLIP_LAYER_KEYS)
            out[new or key] = value  # unknown keys keep their name: strict loading lists them
            continue
        short = key[len("visual."):]
        if short == "conv1.weight":
            out["conv_proj.weight"] = value
        elif short == "class_embedding":
            out["class_token"] = value.reshape(1, 1, -1)
        elif short == "positional_embedding":
            out["encoder.pos_embedding"] = value.unsqueeze(0)
        elif short == "proj":  # (width, embed_dim), used as x @ proj
            out["proj.weight"] = value.t().contiguous()
        elif short.split(".")[0] in ("ln_pre", "ln_post"):
            part, param = short.split(".")
            out[("ln_pre." if part == "ln_pre" else "encoder.ln.") + param] = value
        else:
            out[key] = value
    return out


def from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' CLIPModel (or CLIPVisionModelWithProjection) state dict -> the image tower."""
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    top = {
        "vision_model.embeddings.patch_embedding.weight": "conv_proj.weight",
        "vision_model.pre_layrnorm.weight": "ln_pre.weight", "vision_model.pre_layrnorm.bias": "ln_pre.bias",
        "vision_model.post_layernorm.weight": "encoder.ln.weight",
        "vision_model.post_layernorm.bias": "encoder.ln.bias", "visual_projection.weight": "proj.weight",
    }
    for key, value in state.items():
        if not key.startswith(("vision_model.", "visual_projection.")) or key.endswith("position_ids"):
            continue
        if m := _HF_LAYER.match(key):
            i, rest = m.groups()
            if q := re.match(r"self_attn\.(q|k|v)_proj\.(weight|bias)$", rest):
                qkv.setdefault(f"encoder.layers.encoder_layer_{i}.self_attention.in_proj_{q.group(2)}",
                               {})[q.group(1)] = value
                continue
            out[_layer_key(i, rest, _HF_LAYER_KEYS) or key] = value
        elif key == "vision_model.embeddings.class_embedding":
            out["class_token"] = value.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["encoder.pos_embedding"] = value.unsqueeze(0)
        else:
            out[top.get(key, key)] = value
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{name}: the checkpoint lacks {sorted({'q', 'k', 'v'} - set(parts))}")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def image_state(library: str, state: dict[str, Tensor], module: CLIPTokenViT) -> dict[str, Tensor]:
    """The library's checkpoint in `module`'s keys, the position embedding resampled to its grid."""
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    out = from_open_clip(state) if library == "open_clip" else from_transformers(state)
    pos = out.get("encoder.pos_embedding")
    if pos is not None and pos.shape[1] != module.seq_length:
        side = round((pos.shape[1] - 1) ** 0.5)
        if side * side != pos.shape[1] - 1:
            raise CheckpointError(f"position embedding of {pos.shape[1]} tokens: not 1 + a square grid")
        grid = (module.grid_size,) * 2
        out["encoder.pos_embedding"] = resample_pos_embedding(pos, 1, (side, side), grid)
    return out
