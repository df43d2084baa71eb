"""DETR: one head's decoder cross-attention for one object query, recomputed (see steps.py).

The decoder layer's cross-attention is given query = tgt + query_pos (the object query's state
after the self-attention sublayer, plus its learned embedding), key = memory + pos (the encoder's
output plus the sine position embedding), value = memory. q, k, v = in_proj applied to them, split
per head; logits = k q / sqrt(d); mask = -inf on padding cells (nn.MultiheadAttention's
key_padding_mask); the residual after the sublayer is norm2(tgt + attention) (post-norm)."""
from __future__ import annotations

import numpy as np

from .steps import AttentionSteps, cached_input, softmax, to_numpy


def pixel_padding(analysis) -> np.ndarray:
    """(H, W) bool True = padding pixel of the analysis's model input (bottom/right of the resize)."""
    t = analysis.grid.transform
    h, w = analysis.model_input.shape[-2:]
    rh, rw = round(t.orig_h * t.scale_y), round(t.orig_w * t.scale_x)
    return (np.arange(h)[:, None] >= rh) | (np.arange(w)[None, :] >= rw)


def detr_attention_steps(analysis, layer: int, head: int, query_index: int, kind: str = "cross") -> AttentionSteps:
    import torch
    import torch.nn.functional as F

    from ..capture.block_inputs import detr_cross_inputs
    from ..gradients import model_of

    if kind != "cross":
        raise ValueError(f"DETR attention steps cover the decoder's cross-attention (kind='cross'), not {kind!r}")
    layer = analysis._layer(int(layer), analysis.num_layers) % analysis.num_layers
    qi = analysis._query(query_index)
    if not 0 <= int(head) < analysis.num_heads:
        raise IndexError(f"head {head} out of range (layer has {analysis.num_heads})")
    head = int(head)
    model = model_of(analysis).module
    inp = cached_input(analysis, ("detr", layer),
                       lambda: detr_cross_inputs(model, analysis.model_input, pixel_padding(analysis), layer))
    dec = model.transformer.decoder.layers[layer]
    mha = dec.multihead_attn
    dim = mha.embed_dim
    dh = dim // mha.num_heads
    sl = slice(head * dh, (head + 1) * dh)
    w, b = mha.in_proj_weight, mha.in_proj_bias
    with torch.no_grad():
        query, key, value = inp["tgt"] + inp["query_pos"], inp["memory"] + inp["pos"], inp["memory"]
        q = F.linear(query[qi], w[:dim], b[:dim])[sl]
        k = F.linear(key, w[dim:2 * dim], b[dim:2 * dim])[:, sl]
        v = F.linear(value, w[2 * dim:], b[2 * dim:])[:, sl]
        sub = mha.forward(query[:, None], key[:, None], value[:, None], need_weights=False,
                          key_padding_mask=inp["key_padding_mask"][None])[0][qi, 0]
        after = dec.norm2(inp["tgt"][qi] + sub)
    q, k, v = to_numpy(q), to_numpy(k), to_numpy(v)
    scale = 1.0 / np.sqrt(dh)
    logits = k @ q * scale
    pad = inp["key_padding_mask"].cpu().numpy()
    mask = np.where(pad, -np.inf, 0.0)
    weights = softmax(logits + mask)
    output = weights @ v
    rows, cols = analysis.grid.shape
    r, c = np.divmod(np.arange(rows * cols), cols)
    return AttentionSteps(
        family="detr", where=f"decoder layer {layer} (cross), head {head}", head=head, query=qi,
        query_position=None, q=q, k=k, v=v, scale=float(scale), logits=logits, bias=np.zeros_like(logits),
        mask=mask, weights=weights, output=output, positions=np.stack([r, c], 1), valid=~pad,
        grid_shape=(rows, cols), head_projection=to_numpy(mha.out_proj.weight[:, sl]) @ output,
        attention_output=to_numpy(sub), residual_in=to_numpy(inp["tgt"][qi]), residual_out=to_numpy(after),
        captured=analysis.dec_cross[layer, head, qi].astype(np.float32),
        notes=("keys: encoder memory + position embedding; values: encoder memory",))
