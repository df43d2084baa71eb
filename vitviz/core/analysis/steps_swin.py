"""Swin: one head's window attention for one token recomputed from the block's weights (steps.py).

The block's attention input (v1: norm1 of the residual stream, v2: the stream itself) is padded and
cut into the block's windows exactly as `shifted_window_attention` does (the slot coordinates of
vitviz.core.analysis.windows, through the roll). q, k, v = qkv applied to the query's window (v2: the
k bias is zero). v1: logits = k q / sqrt(d); v2: cos(q, k) * exp(min(logit_scale, log 100)).
bias = the block's relative position bias for (query, key); mask = -100 for pairs the shifted window
keeps apart. Keys are the window's N = Mh*Mw slots, padding slots included (they get weight too)."""
from __future__ import annotations

import math

import numpy as np

from . import windows as win
from .steps import AttentionSteps, cached_input, softmax, to_numpy


def swin_attention_steps(analysis, stage: int, block: int, head: int, token) -> AttentionSteps:
    import torch
    import torch.nn.functional as F

    from ..capture.block_inputs import swin_block_input, swin_v2_block
    from ..gradients import model_of

    b = analysis.block(stage, block)
    if not 0 <= int(head) < b.heads:
        raise IndexError(f"head {head} out of range (block has {b.heads})")
    head, (r, c) = int(head), (int(token[0]), int(token[1]))
    layout = b.layout
    slot = win.window_slot(layout, r, c)
    module, h = cached_input(analysis, ("swin", b.index),
                             lambda: swin_block_input(model_of(analysis).module, analysis.model_input, b.index))
    attn, v2 = module.attn, swin_v2_block(module)
    dim = h.shape[-1]
    dh = dim // attn.num_heads
    sl = slice(head * dh, (head + 1) * dh)
    coords = win.window_token_coords(layout)[slot.window]  # (N, 2) padded-image positions
    hp, wp = layout.padded
    with torch.no_grad():
        x = h if v2 else module.norm1(h)  # (1, H, W, C): what the attention module is given
        xp = F.pad(x[0], (0, 0, 0, wp - layout.width, 0, hp - layout.height))
        xw = xp[torch.as_tensor(coords[:, 0]), torch.as_tensor(coords[:, 1])]  # (N, C)
        qkv_bias = attn.qkv.bias.clone() if attn.qkv.bias is not None else None
        if v2 and qkv_bias is not None:
            qkv_bias[dim:2 * dim] = 0  # torchvision zeroes the key bias of cosine attention
        q_all, k_all, v_all = F.linear(xw, attn.qkv.weight, qkv_bias).split(dim, dim=-1)
        bias = attn.get_relative_position_bias()[0, head, slot.index]  # (N,)
        sublayer = attn.forward(x)[0, r, c]  # (C,)
        after = module.norm1(sublayer) if v2 else sublayer
        scale = (torch.clamp(attn.logit_scale[head].flatten()[0], max=math.log(100.0)).exp().item()
                 if v2 else dh ** -0.5)
    q, k, v = to_numpy(q_all[slot.index, sl]), to_numpy(k_all[:, sl]), to_numpy(v_all[:, sl])
    if v2:
        unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)  # F.normalize
        logits = unit(k) @ unit(q) * scale
    else:
        logits = k @ q * scale
    mask = np.where(win.window_mask(layout)[slot.window, slot.index], -100.0, 0.0)
    bias = to_numpy(bias)
    weights = softmax(logits + bias + mask)
    output = weights @ v
    residual_in = to_numpy(h[0, r, c])
    return AttentionSteps(
        family="swin", where=f"stage {b.stage} block {b.block}, head {head}", head=head, query=slot.index,
        query_position=(r, c), q=q, k=k, v=v, scale=float(scale), logits=logits, bias=bias, mask=mask,
        weights=weights, output=output, positions=coords.astype(int),
        valid=(coords[:, 0] < layout.height) & (coords[:, 1] < layout.width),
        grid_shape=(layout.height, layout.width), head_projection=to_numpy(attn.proj.weight[:, sl]) @ output,
        attention_output=to_numpy(sublayer), residual_in=residual_in, residual_out=residual_in + to_numpy(after),
        captured=analysis.attn[b.index][slot.window, head, slot.index].astype(np.float32),
        notes=(("cosine attention (Swin v2): logits = cos(q, k) x learned scale",) if v2 else ()))
