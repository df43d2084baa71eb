"""Hugging Face DETR (DetrForObjectDetection with its timm ResNet backbone) as vitviz's DETR.

transformers' DETR is a port of the official code (post-norm layers, the same sine position
embedding from the mask, query embeddings added to queries, frozen batch norm), so its weights are
the official ones under other names. Mapped back, the model is vitviz.core.models.detr and the
DETR capture and views apply unchanged.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor

from .errors import CheckpointError

DETR_TYPES = ("detr",)
_BACKBONE = "model.backbone.conv_encoder.model."
_LAYER = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")
_ENC = {"self_attn.out_proj": "self_attn.out_proj", "self_attn_layer_norm": "norm1", "fc1": "linear1",
        "fc2": "linear2", "final_layer_norm": "norm2"}
_DEC = {"self_attn.out_proj": "self_attn.out_proj", "encoder_attn.out_proj": "multihead_attn.out_proj",
        "self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2", "fc1": "linear1",
        "fc2": "linear2", "final_layer_norm": "norm3"}
_TOP = {"model.input_projection": "input_proj", "model.query_position_embeddings": "query_embed",
        "model.decoder.layernorm": "transformer.decoder.norm", "class_labels_classifier": "class_embed"}


def detr_config(cfg: dict):
    """vitviz's DetrConfig for a transformers DETR config."""
    from .detr import BACKBONE_CHANNELS, DetrConfig

    backbone = cfg.get("backbone") or (cfg.get("backbone_config") or {}).get("backbone")
    if cfg.get("use_timm_backbone", True) is False or backbone not in BACKBONE_CHANNELS or backbone == "small_cnn":
        raise CheckpointError(f"DETR with backbone {backbone!r}: vitviz runs DETR with a timm ResNet "
                              f"({', '.join(b for b in BACKBONE_CHANNELS if b != 'small_cnn')})")
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if cfg.get(a) != cfg.get(b):
            raise CheckpointError(f"DETR with {a} != {b} is not supported")
    if cfg.get("position_embedding_type", "sine") != "sine" or cfg.get("activation_function", "relu") != "relu":
        raise CheckpointError("DETR with learned position embeddings or a non-ReLU activation is not supported")
    return DetrConfig(backbone=backbone, dilation=bool(cfg.get("dilation", False)), d_model=int(cfg["d_model"]),
                      nheads=int(cfg["encoder_attention_heads"]), enc_layers=int(cfg["encoder_layers"]),
                      dec_layers=int(cfg["decoder_layers"]), dim_feedforward=int(cfg["encoder_ffn_dim"]),
                      num_queries=int(cfg["num_queries"]), num_classes=len(cfg.get("id2label") or {}) or 91)


def build(cfg: dict, input_size: int | None = None):
    from .detr import build_detr

    return build_detr(detr_config(cfg))


def convert_state(cfg: dict, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The checkpoint in the official DETR keys."""
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith(_BACKBONE):
            out["backbone.0.body." + key[len(_BACKBONE):]] = value
            continue
        if m := _LAYER.match(key):
            side, i, rest = m.groups()
            prefix = f"transformer.{side}.layers.{i}."
            if q := re.match(r"(self_attn|encoder_attn)\.(q|k|v)_proj\.(weight|bias)$", rest):
                attn = "self_attn" if q.group(1) == "self_attn" else "multihead_attn"
                qkv.setdefault(prefix + f"{attn}.in_proj_{q.group(3)}", {})[q.group(2)] = value
                continue
            module, _, param = rest.rpartition(".")
            table = _ENC if side == "encoder" else _DEC
            if module in table:
                out[prefix + f"{table[module]}.{param}"] = value
                continue
        module, _, param = key.rpartition(".")
        if module in _TOP:
            out[f"{_TOP[module]}.{param}"] = value
        elif m := re.match(r"^bbox_predictor\.layers\.(\d)\.(weight|bias)$", key):
            out[f"bbox_embed.layers.{m.group(1)}.{m.group(2)}"] = value
        else:
            out[key] = value  # unknown: strict loading lists it
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{name}: the checkpoint lacks part of q/k/v")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
