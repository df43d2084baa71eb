"""ViT: one head's attention for one query recomputed from the block's weights (see steps.py).

q, k, v = the layer's in_proj applied to ln_1 of the residual stream entering the layer (run from the
analysis's model input, vitviz.core.capture.block_inputs), split per head; scale = 1/sqrt(d_head)
as nn.MultiheadAttention applies it; no bias or mask. The sublayer output is the module's own
forward; the residual after it is x + attention(ln_1(x)) (pre-norm)."""
from __future__ import annotations

import numpy as np

from .steps import AttentionSteps, PatchEmbeddingStep, cached_input, softmax, to_numpy


def vit_attention_steps(analysis, layer: int, head: int, query="cls") -> AttentionSteps:
    import torch
    import torch.nn.functional as F

    from ..capture.block_inputs import vit_block_input
    from ..gradients import model_of
    from .token_norms import prefix_names

    model = model_of(analysis).module
    layer = analysis._layer(int(layer)) % analysis.num_layers
    if not 0 <= int(head) < analysis.num_heads:
        raise IndexError(f"head {head} out of range (layer has {analysis.num_heads})")
    head, qi = int(head), analysis.token_index(query)
    tokens, h = cached_input(analysis, ("vit", layer), lambda: vit_block_input(model, analysis.model_input, layer))
    block = model.encoder.layers[layer]
    mha = block.self_attention
    dim = mha.embed_dim
    dh = dim // mha.num_heads
    sl = slice(head * dh, (head + 1) * dh)
    with torch.no_grad():
        y = block.ln_1(h)  # (1, N, D): what the attention's projections see
        q_all, k_all, v_all = F.linear(y[0], mha.in_proj_weight, mha.in_proj_bias).split(dim, dim=-1)
        sublayer, _ = mha.forward(y, y, y, need_weights=False)  # (1, N, D)
    q, k, v = to_numpy(q_all[qi, sl]), to_numpy(k_all[:, sl]), to_numpy(v_all[:, sl])
    scale = 1.0 / np.sqrt(dh)
    logits = k @ q * scale
    zeros = np.zeros_like(logits)
    weights = softmax(logits)
    output = weights @ v
    w_o = to_numpy(mha.out_proj.weight)  # (D, D)
    attn_out = to_numpy(sublayer[0, qi])
    p, g = analysis.num_prefix_tokens, analysis.grid
    rows, cols = np.divmod(np.arange(len(g)), g.cols)
    positions = np.concatenate([np.full((p, 2), -1), np.stack([rows, cols], 1)]).astype(int)
    return AttentionSteps(
        family="vit", where=f"layer {layer}, head {head}", head=head, query=qi,
        query_position=None if qi < p else tuple(int(t) for t in positions[qi]),
        q=q, k=k, v=v, scale=float(scale), logits=logits, bias=zeros, mask=zeros.copy(),
        weights=weights, output=output, positions=positions, valid=np.arange(len(positions)) >= p,
        grid_shape=g.shape, head_projection=w_o[:, sl] @ output, attention_output=attn_out,
        residual_in=to_numpy(h[0, qi]), residual_out=to_numpy(h[0, qi]) + attn_out,
        captured=analysis.attn[layer, head, qi].astype(np.float32), key_labels=tuple(prefix_names(analysis)),
        embedding=None if qi < p else patch_embedding_step(model, analysis, tokens, qi - p))


def patch_embedding_step(model, analysis, tokens, patch: int) -> PatchEmbeddingStep:
    """The patch-embedding slide for patch `patch` (row-major) of the analysis's grid."""
    import torch
    from torch import nn

    from ..capture.block_inputs import model_input_batch
    from .embeddings import position_embedding_used

    g = analysis.grid
    r, c = divmod(int(patch), g.cols)
    size = int(model.patch_size)
    with torch.no_grad():
        emb = model.conv_proj(model_input_batch(model, analysis.model_input))[0, :, r, c]
    conv = model.conv_proj
    linear = (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (size, size)
              and tuple(conv.stride) == (size, size))
    pixels = np.asarray(analysis.model_input)[:, r * size:(r + 1) * size, c * size:(c + 1) * size]
    return PatchEmbeddingStep(
        pixels=pixels.transpose(1, 2, 0).astype(np.float64), embedding=to_numpy(emb),
        position=position_embedding_used(model, g.rows, g.cols)[patch],
        token=to_numpy(tokens[0, analysis.num_prefix_tokens + patch]), linear=linear)
