"""Hugging Face Swin and Swin V2 as torchvision's SwinTransformer, weights mapped key by key.

The two implementations compute the same thing (same patch-merging order x0..x3, same relative
position index, same -100 shifted-window mask, same shift rule where a window covers the map), so
torchvision's model runs instead and the exact softmax capture of vitviz.core.capture.swin applies.
What differs is only naming: q, k, v are separate in HF and one qkv in torchvision; Swin V2's key
has no bias in HF, where torchvision zeroes that slice of its qkv bias in every forward anyway.
"""
from __future__ import annotations

import re
from functools import partial

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .key_maps import weight_and_bias

SWIN_TYPES = ("swin", "swinv2")
_BLOCK = re.compile(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWN = re.compile(r"^encoder\.layers\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$")
_BLOCK_KEYS = weight_and_bias({
    "layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.0", "output.dense": "mlp.3",
    "attention.self.continuous_position_bias_mlp.0": "attn.cpb_mlp.0",
}, {
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.self.logit_scale": "attn.logit_scale",
    "attention.self.continuous_position_bias_mlp.2.weight": "attn.cpb_mlp.2.weight",
})
# buffers both sides compute from the window size; torchvision keeps its own
_BUFFERS = ("attention.self.relative_position_index", "attention.self.relative_coords_table")
_TOP = weight_and_bias({
    "embeddings.patch_embeddings.projection": "features.0.0", "embeddings.norm": "features.0.2",
    "layernorm": "norm", "classifier": "head",
})


def build(cfg: dict, input_size: int | None = None) -> nn.Module:
    """A torchvision SwinTransformer (v1 or v2) of the config's shape, random weights."""
    from torchvision.models import swin_transformer as tvs

    v2 = cfg.get("model_type") == "swinv2"
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"Swin with hidden_act {cfg.get('hidden_act')!r}: vitviz runs the exact GELU only")
    if cfg.get("use_absolute_embeddings"):
        raise CheckpointError("Swin with absolute position embeddings is not supported")
    if v2 and any(cfg.get("pretrained_window_sizes", [0])):
        raise CheckpointError("Swin V2 fine-tuned from another window size (pretrained_window_sizes "
                              f"{cfg['pretrained_window_sizes']}) is not supported: torchvision's V2 "
                              "scales its position table by the current window only")
    if not cfg.get("qkv_bias", True):
        raise CheckpointError("Swin without qkv biases is not supported")
    archs = cfg.get("architectures") or []
    classify = any("ForImageClassification" in a for a in archs)
    p, w = int(cfg["patch_size"]), int(cfg["window_size"])
    model = tvs.SwinTransformer(
        patch_size=[p, p], embed_dim=int(cfg["embed_dim"]), depths=list(cfg["depths"]),
        num_heads=list(cfg["num_heads"]), window_size=[w, w], mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
        stochastic_depth_prob=0.0, num_classes=len(cfg.get("id2label") or {}) if classify else 1,
        norm_layer=partial(nn.LayerNorm, eps=float(cfg.get("layer_norm_eps", 1e-5))),
        block=tvs.SwinTransformerBlockV2 if v2 else tvs.SwinTransformerBlock,
        downsample_layer=tvs.PatchMergingV2 if v2 else tvs.PatchMerging)
    if not classify:  # SwinModel: the pooled features stand in for logits (no class names)
        model.head = nn.Identity()
    return model


def convert_state(cfg: dict, state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """The checkpoint in torchvision's keys; `own` is the built model's state (for its buffers)."""
    base = "swinv2." if any(k.startswith("swinv2.") for k in state) else "swin."
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        k = key[len(base):] if key.startswith(base) else key
        if m := _BLOCK.match(k):
            s, b, rest = m.groups()
            prefix = f"features.{2 * int(s) + 1}.{b}."
            if rest in _BUFFERS:
                continue
            if q := re.match(r"attention\.self\.(query|key|value)\.(weight|bias)$", rest):
                qkv.setdefault(prefix + f"attn.qkv.{q.group(2)}", {})[q.group(1)] = value
                continue
            if rest in _BLOCK_KEYS:
                out[prefix + _BLOCK_KEYS[rest]] = value
                continue
        elif m := _DOWN.match(k):
            out[f"features.{2 * int(m.group(1)) + 2}.{m.group(2)}"] = value
            continue
        elif k in _TOP:
            out[_TOP[k]] = value
            continue
        out[key] = value  # unknown: strict loading lists it
    for name, parts in qkv.items():
        if name.endswith(".bias") and "key" not in parts and "query" in parts:  # V2: key has no bias
            parts["key"] = torch.zeros_like(parts["query"])
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"{name}: the checkpoint lacks {sorted({'query', 'key', 'value'} - set(parts))}")
        out[name] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    for name, value in own.items():  # relative_position_index / relative_coords_table
        if name.endswith(("relative_position_index", "relative_coords_table")):
            out[name] = value
    return out
