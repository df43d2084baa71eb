"""DETR (DEtection TRansformer, Carion et al. 2020) built from torchvision parts.

torchvision has no DETR, so the model is assembled here with the module names of the official
facebookresearch/detr code, so its checkpoints (detr-r50, -r101, -r50-dc5, -r101-dc5) load with
`load_state_dict(strict=True)` as they are: `backbone.0.body.*` (ResNet with frozen batch norm),
`input_proj`, `query_embed`, `transformer.{encoder,decoder}.layers.N.*`, `transformer.decoder.norm`,
`class_embed`, `bbox_embed.layers.N`. Every model is built with random weights; nothing is
downloaded.

Semantics follow the paper's code: post-norm layers, the sine position embedding (computed from
the padding mask) added to queries and keys of every attention but never to values, learned
query embeddings added to the decoder's queries, and a shared LayerNorm on the decoder output.
Attention runs through nn.MultiheadAttention with keyword arguments only, so capture hooks
(vitviz.core.capture.detr) can ask for per-head weights without touching this code.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

# Backbones DETR can use, with the channel count of their last stage. "small_cnn" is not in the
# paper: a six-convolution stride-8 network for models trained from scratch on a CPU budget (the
# offline demo DETR, vitviz.demo.models), where a ResNet is too slow to train and too coarse for
# 128 px inputs.
BACKBONE_CHANNELS: dict[str, int] = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "small_cnn": 128,
}
SMALL_CNN_WIDTHS = (32, 64, 128)  # channels of its three stride-2 stages


@dataclass(frozen=True)
class DetrConfig:
    """Everything that fixes the shape of a DETR model.

    `num_classes` follows DETR's convention: the largest class id + 1 (91 for COCO, whose ids
    run 1..90 with gaps); the classifier has one more output, the last one being "no object".
    """

    backbone: str = "resnet50"  # one of BACKBONE_CHANNELS
    dilation: bool = False  # DC5: last ResNet stage dilated instead of strided (stride 16)
    d_model: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1  # only active in train mode
    num_queries: int = 100
    num_classes: int = 91
    pos_temperature: float = 10000.0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_CHANNELS:
            raise ValueError(f"unknown DETR backbone {self.backbone!r}; "
                             f"choose one of {sorted(BACKBONE_CHANNELS)}")
        if self.dilation and self.backbone in ("resnet18", "resnet34", "small_cnn"):
            # torchvision's BasicBlock refuses dilation > 1
            raise ValueError(f"{self.backbone} does not support the DC5 (dilated) variant")
        if self.d_model % self.nheads:
            raise ValueError(f"d_model {self.d_model} is not divisible by nheads {self.nheads}")
        if self.d_model % 2:
            raise ValueError("d_model must be even: half of it encodes y, half x")
        for name in ("enc_layers", "dec_layers", "num_queries", "num_classes", "dim_feedforward"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def backbone_channels(self) -> int:
        return BACKBONE_CHANNELS[self.backbone]

    @property
    def stride(self) -> int:
        """Pixels of input per feature-map cell."""
        if self.backbone == "small_cnn":
            return 2 ** len(SMALL_CNN_WIDTHS)
        return 16 if self.dilation else 32

    @property
    def head_dim(self) -> int:
        return self.d_model // self.nheads

    def with_changes(self, **changes) -> "DetrConfig":
        return replace(self, **changes)


# The four official COCO detection models (91 class ids + no-object, 100 queries).
DETR_PRESETS: dict[str, DetrConfig] = {
    "detr_resnet50": DetrConfig(backbone="resnet50"),
    "detr_resnet101": DetrConfig(backbone="resnet101"),
    "detr_resnet50_dc5": DetrConfig(backbone="resnet50", dilation=True),
    "detr_resnet101_dc5": DetrConfig(backbone="resnet101", dilation=True),
}


def detr_preset(name: str) -> DetrConfig:
    try:
        return DETR_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown DETR preset {name!r}; "
                       f"choose one of {sorted(DETR_PRESETS)}") from None


# --------------------------------------------------------------------------- backbone


def resnet_body(name: str, dilation: bool) -> nn.Sequential:
    """A randomly initialised torchvision ResNet up to layer4, with frozen batch norm.

    Children keep torchvision's names (conv1, bn1, relu, maxpool, layer1..layer4) so parameters
    are `body.conv1.weight`, `body.layer1.0.bn1.running_mean`, ...; avgpool and fc are dropped,
    as DETR's checkpoints have no such keys.
    """
    if name not in BACKBONE_CHANNELS:
        raise ValueError(f"unknown backbone {name!r}")
    resnet = getattr(torchvision.models, name)(
        weights=None,
        replace_stride_with_dilation=[False, False, dilation],
        norm_layer=FrozenBatchNorm2d,
    )
    keep = [(n, m) for n, m in resnet.named_children() if n not in ("avgpool", "fc")]
    return nn.Sequential(OrderedDict(keep))


def small_cnn_body() -> nn.Sequential:
    """Per stage a 3x3 stride-2 convolution then a 3x3 one, each with GroupNorm and ReLU
    (3 -> 32 -> 64 -> 128 channels, stride 8). GroupNorm, not batch norm: it trains from scratch
    with small batches and keeps no running statistics, so a trained model loads strictly."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in SMALL_CNN_WIDTHS:
        for stride in (2, 1):
            layers += [nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.GroupNorm(8, c), nn.ReLU()]
            c_in = c
    return nn.Sequential(*layers)


class Backbone(nn.Module):
    """CNN body plus the padding mask brought down to the feature map's resolution."""

    def __init__(self, name: str, dilation: bool) -> None:
        super().__init__()
        self.body = small_cnn_body() if name == "small_cnn" else resnet_body(name, dilation)
        self.num_channels = BACKBONE_CHANNELS[name]

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.body(images)  # (n, 3, H, W) -> (n, c, h, w)
        # nearest-neighbour resampling, as DETR does: a cell is padding if its sample pixel is
        feat_mask = F.interpolate(mask[:, None].float(), size=feats.shape[-2:])[:, 0].bool()
        return feats, feat_mask  # (n, c, h, w), (n, h, w)


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-D sine/cosine embedding of each cell's position within the unpadded image.

    Coordinates are cumulative counts of valid cells, normalised to (0, 2*pi], so the embedding
    depends on where a cell sits relative to the real image, not the padded canvas.
    The output is [y features, x features], each `num_pos_feats` long with sin/cos interleaved.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0,
                 scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: Tensor) -> Tensor:
        # (n, h, w) bool, True = padding -> (n, 2 * num_pos_feats, h, w)
        valid = ~mask
        y = valid.cumsum(1, dtype=torch.float32)
        x = valid.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale

        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        freq = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x[..., None] / freq  # (n, h, w, f)
        pos_y = y[..., None] / freq
        # even channels sin, odd channels cos, interleaved back in channel order
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class BackboneWithPosition(nn.ModuleList):
    """[Backbone, PositionEmbeddingSine] as children "0" and "1" (DETR's Joiner), which is what
    puts the ResNet weights under `backbone.0.body.*`."""

    def __init__(self, backbone: Backbone, position: PositionEmbeddingSine) -> None:
        super().__init__([backbone, position])
        self.num_channels = backbone.num_channels

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats, feat_mask = self[0](images, mask)
        pos = self[1](feat_mask).to(feats.dtype)
        return feats, feat_mask, pos  # (n, c, h, w), (n, h, w), (n, d, h, w)


# --------------------------------------------------------------------------- transformer


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


def _add_ffn_and_norms(layer: nn.Module, d_model: int, dim_feedforward: int, dropout: float,
                       sublayers: int) -> None:
    """The FFN (linear1, linear2, dropout) and one normK/dropoutK per sublayer, under the names DETR's
    checkpoints use."""
    layer.linear1 = nn.Linear(d_model, dim_feedforward)
    layer.linear2 = nn.Linear(dim_feedforward, d_model)
    layer.dropout = nn.Dropout(dropout)
    for k in range(1, sublayers + 1):
        setattr(layer, f"norm{k}", nn.LayerNorm(d_model))
        setattr(layer, f"dropout{k}", nn.Dropout(dropout))


class EncoderLayer(nn.Module):
    """Post-norm self-attention + FFN; the position embedding goes into queries and keys only."""

    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        _add_ffn_and_norms(self, d_model, dim_feedforward, dropout, sublayers=2)

    def forward(self, src: Tensor, key_padding_mask: Tensor | None, pos: Tensor | None) -> Tensor:
        # src, pos: (hw, n, d); key_padding_mask: (n, hw)
        qk = _with_pos(src, pos)
        attn = self.self_attn(qk, qk, value=src, key_padding_mask=key_padding_mask,
                              need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DecoderLayer(nn.Module):
    """Post-norm query self-attention, cross-attention to the encoder memory, then FFN."""

    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        _add_ffn_and_norms(self, d_model, dim_feedforward, dropout, sublayers=3)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None,
                pos: Tensor | None, query_pos: Tensor | None) -> Tensor:
        # tgt, query_pos: (q, n, d); memory, pos: (hw, n, d); memory_key_padding_mask: (n, hw)
        qk = _with_pos(tgt, query_pos)
        attn = self.self_attn(qk, qk, value=tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attn))
        attn = self.multihead_attn(_with_pos(tgt, query_pos), _with_pos(memory, pos), value=memory,
                                   key_padding_mask=memory_key_padding_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: Tensor, key_padding_mask: Tensor | None, pos: Tensor | None) -> Tensor:
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src  # post-norm: no final norm, matching DETR


class Decoder(nn.Module):
    def __init__(self, layer: DecoderLayer, num_layers: int, d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None,
                pos: Tensor | None, query_pos: Tensor | None) -> Tensor:
        # -> (layers, q, n, d): every layer's output through the shared final norm, which is
        # what DETR's auxiliary heads see; the last entry is the model's output.
        outs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos)
            outs.append(self.norm(tgt))
        return torch.stack(outs)


class Transformer(nn.Module):
    def __init__(self, d_model: int, nheads: int, enc_layers: int, dec_layers: int,
                 dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.nheads = nheads
        self.encoder = Encoder(EncoderLayer(d_model, nheads, dim_feedforward, dropout), enc_layers)
        self.decoder = Decoder(DecoderLayer(d_model, nheads, dim_feedforward, dropout), dec_layers,
                               d_model)
        for p in self.parameters():  # DETR's initialisation of the transformer's matrices
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor
                ) -> tuple[Tensor, Tensor]:
        """src, pos_embed: (n, d, h, w); mask: (n, h, w) True = padding; query_embed: (q, d).
        Returns decoder outputs (layers, n, q, d) and the encoder memory (n, d, h, w)."""
        n, d, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # (n, d, h, w) -> (hw, n, d)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)  # (n, d, h, w) -> (hw, n, d)
        query_pos = query_embed.unsqueeze(1).expand(-1, n, -1)  # (q, d) -> (q, n, d)
        key_padding_mask = mask.flatten(1)  # (n, h, w) -> (n, hw)

        memory = self.encoder(src, key_padding_mask, pos_embed)
        tgt = torch.zeros_like(query_pos)  # queries start empty; query_pos says who is who
        hs = self.decoder(tgt, memory, key_padding_mask, pos_embed, query_pos)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(n, d, h, w)


# --------------------------------------------------------------------------- heads + model


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box head: d -> d -> d -> 4)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DETR(nn.Module):
    """Detection transformer with the official module layout.

    forward(images (n, 3, H, W), mask (n, H, W) bool True = padding, optional) returns
    {"pred_logits": (n, q, num_classes + 1), "pred_boxes": (n, q, 4)} with boxes as sigmoid
    (cx, cy, w, h) relative to each image's unpadded extent; with `return_aux=True` also
    "aux_outputs": one such dict per earlier decoder layer.
    """

    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.backbone = BackboneWithPosition(
            Backbone(config.backbone, config.dilation),
            PositionEmbeddingSine(d // 2, temperature=config.pos_temperature),
        )
        self.input_proj = nn.Conv2d(self.backbone.num_channels, d, kernel_size=1)
        self.transformer = Transformer(d, config.nheads, config.enc_layers, config.dec_layers,
                                       config.dim_feedforward, config.dropout)
        self.query_embed = nn.Embedding(config.num_queries, d)
        self.class_embed = nn.Linear(d, config.num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)

    @property
    def num_queries(self) -> int:
        return self.config.num_queries

    def forward(self, images: Tensor, mask: Tensor | None = None,
                return_aux: bool = False) -> dict:
        if images.dim() != 4:
            raise ValueError(f"expected images (n, 3, H, W), got shape {tuple(images.shape)}")
        if mask is None:
            mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool,
                               device=images.device)
        feats, feat_mask, pos = self.backbone(images, mask.bool())
        hs, _ = self.transformer(self.input_proj(feats), feat_mask, self.query_embed.weight, pos)
        logits = self.class_embed(hs)  # (layers, n, q, d) -> (layers, n, q, classes + 1)
        boxes = self.bbox_embed(hs).sigmoid()  # (layers, n, q, d) -> (layers, n, q, 4)
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if return_aux:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b}
                                  for a, b in zip(logits[:-1], boxes[:-1])]
        return out


def build_detr(config: DetrConfig | str = "detr_resnet50") -> DETR:
    """A randomly initialised DETR in eval mode; `config` is a DetrConfig or a preset name.
    Never downloads anything: load trained weights with detr_checkpoint.load_detr_state_dict."""
    if isinstance(config, str):
        config = detr_preset(config)
    return DETR(config).eval()
