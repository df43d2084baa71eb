"""The residual stream entering one block, on request, for the step-by-step attention walk-through.

The normal capture keeps only attention weights; the walk-through also needs what the block's
projections were applied to. Rather than record every block's input on every forward, these
functions run the model from the analysis's own model input up to the one block asked for. The
pass is each block's forward written out with the attention called through `.forward`, so no hook
fires: the GUI worker may be capturing from the same model in another thread (as token_norms does).
The tests check the results against hooks on the models' own modules.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def model_input_batch(model: nn.Module, x) -> Tensor:
    """(3, H, W) array -> (1, 3, H, W) on the model's device and dtype."""
    param = next(model.parameters())
    return torch.as_tensor(x)[None].to(param.device, param.dtype)


def vit_block_input(model: nn.Module, x, layer: int) -> tuple[Tensor, Tensor]:
    """torchvision-layout ViT, x (3, H, W): (tokens entering layer 0, residual entering `layer`),
    each (1, N, D)."""
    from ..analysis.token_norms import encoder_block, encoder_input

    with torch.no_grad():
        tokens = encoder_input(model, model_input_batch(model, x))
        h = tokens
        for block in model.encoder.layers[:layer]:
            h = encoder_block(block, h)
    return tokens, h


def swin_v2_block(block: nn.Module) -> bool:
    """Swin v2 blocks norm after attention (res-post-norm); v1 blocks norm before it."""
    return getattr(block.attn, "logit_scale", None) is not None


def swin_block_forward(block: nn.Module, h: Tensor) -> Tensor:
    """torchvision SwinTransformerBlock(V2).forward, the attention called through .forward."""
    if swin_v2_block(block):
        h = h + block.stochastic_depth(block.norm1(block.attn.forward(h)))
        return h + block.stochastic_depth(block.norm2(block.mlp(h)))
    h = h + block.stochastic_depth(block.attn.forward(block.norm1(h)))
    return h + block.stochastic_depth(block.mlp(block.norm2(h)))


def swin_block_input(model: nn.Module, x, index: int) -> tuple[nn.Module, Tensor]:
    """torchvision SwinTransformer, x (3, H, W): (the `index`-th Swin block over all stages, the
    residual stream (1, H, W, C) entering it)."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    count = 0
    with torch.no_grad():
        h = model_input_batch(model, x)
        for child in model.features:
            blocks = [m for m in child.children() if isinstance(getattr(m, "attn", None), ShiftedWindowAttention)]
            if not blocks:
                h = child(h)  # patch embedding / patch merging: no vitviz hooks there
                continue
            for block in blocks:
                if count == index:
                    return block, h
                h = swin_block_forward(block, h)
                count += 1
    raise IndexError(f"Swin block {index} out of range (model has {count})")


def _mha(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, key_padding_mask=None) -> Tensor:
    return module.forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=False)[0]


def detr_cross_inputs(model: nn.Module, x, pixel_mask, layer: int) -> dict[str, Tensor]:
    """vitviz DETR, x (3, H, W), pixel_mask (H, W) bool True = padding: what decoder `layer`'s
    cross-attention is given, from a pass with every post-norm layer written out (attention through
    .forward, no hooks). Keys: tgt (Q, D) the queries' residual stream entering the cross-attention,
    query_pos (Q, D), memory (HW, D), pos (HW, D), key_padding_mask (HW,) bool."""
    with torch.no_grad():
        images = model_input_batch(model, x)
        mask = torch.as_tensor(pixel_mask, dtype=torch.bool, device=images.device)[None]
        feats, feat_mask, pos = model.backbone(images, mask)  # backbone: no vitviz hooks there
        src = model.input_proj(feats).flatten(2).permute(2, 0, 1)  # (n, d, h, w) -> (hw, n, d)
        pos = pos.flatten(2).permute(2, 0, 1)
        pad = feat_mask.flatten(1)  # (n, hw)
        for enc in model.transformer.encoder.layers:
            qk = src + pos
            src = enc.norm1(src + _mha(enc.self_attn, qk, qk, src, pad))
            src = enc.norm2(src + enc.linear2(torch.relu(enc.linear1(src))))
        query_pos = model.query_embed.weight.unsqueeze(1)  # (q, 1, d)
        tgt = torch.zeros_like(query_pos)
        for i, dec in enumerate(model.transformer.decoder.layers):
            qk = tgt + query_pos
            tgt = dec.norm1(tgt + _mha(dec.self_attn, qk, qk, tgt))
            if i == layer:
                return {"tgt": tgt[:, 0], "query_pos": query_pos[:, 0], "memory": src[:, 0],
                        "pos": pos[:, 0], "key_padding_mask": pad[0]}
            tgt = dec.norm2(tgt + _mha(dec.multihead_attn, tgt + query_pos, src + pos, src, pad))
            tgt = dec.norm3(tgt + dec.linear2(torch.relu(dec.linear1(tgt))))
    raise IndexError(f"decoder layer {layer} out of range (model has {len(model.transformer.decoder.layers)})")
