"""Relevance (Chefer et al. 2021) carried through a hierarchical Swin model.

Per stage s with T_s = H_s x W_s tokens, block b's window attention is embedded in the full
T_s x T_s matrix at the tokens' true positions: window slot (i, j) of a shifted block holds image
token ((i + shift) mod H_p, (j + shift) mod W_p) (the cyclic shift), zero outside its window, masked
pairs (the shifted-window mask) and padding zero. With Abar_b = mean_h max(A_b * dA_b, 0) so
embedded, each block updates R <- R + Abar_b R, as for ViT. At a patch merging, the merged token's row
is the mean of its (up to four) source tokens' rows: R_{s+1} = M_s R_s with M_s[m, src] = 1 / |src(m)|.
Swin classifies from the mean of the last stage's tokens, so the map is the mean of those rows of
R = P_last M ... M P_0 (P_s the product of a stage's (I + Abar_b)), over the stage-0 tokens.

The identity (residual) path alone spreads the pooled row evenly over every token; it is subtracted
(R - I, as for ViT, where the identity path ends on the class token and is not shown), so the map is
what attention contributed.

Computed as one row vector carried backwards (v <- v + v Abar_b window by window, v <- v M at each
merge): no T x T matrix is ever formed.
"""
from __future__ import annotations

import numpy as np

from .windows import merge_parts, valid_slots, window_mask, window_token_coords


def embedded_abar(block, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token index per window slot (windows, n), -1 for padding; Abar (windows, n, n) float64 with
    masked pairs and padding zeroed) for one block's P = A * dA (windows, heads, n, n)."""
    layout = block.layout
    coords = window_token_coords(layout)  # (windows, n, 2) padded-image (row, col)
    valid = valid_slots(layout)
    idx = np.where(valid, coords[..., 0] * layout.width + coords[..., 1], -1)
    abar = np.maximum(p.astype(np.float64), 0.0).mean(axis=1)  # clamp per head, then mean
    abar[window_mask(layout)] = 0.0  # pairs the shifted-window mask separates
    abar[~valid] = 0.0
    abar.transpose(0, 2, 1)[~valid] = 0.0
    return idx, abar


def _times(v: np.ndarray, idx: np.ndarray, abar: np.ndarray) -> np.ndarray:
    """v (T,) times the block's embedded Abar (T x T), window by window."""
    u = np.where(idx >= 0, v[np.maximum(idx, 0)], 0.0)  # (windows, n) rows of v in window order
    w = np.einsum("wi,wij->wj", u, abar)
    out = np.zeros_like(v)
    np.add.at(out, idx[idx >= 0], w[idx >= 0])
    return out


def _unmerge(v: np.ndarray, coarse: tuple[int, int], fine: tuple[int, int]) -> np.ndarray:
    """v (coarse tokens,) times M (coarse x fine): each fine token gets its merged token's value
    divided by how many real sources that merged token has."""
    (hc, wc), (hf, wf) = coarse, fine
    out = np.zeros(hf * wf)
    v = v.reshape(hc, wc)
    for r in range(hc):
        for c in range(wc):
            src = [(i, j) for i, j in merge_parts(r, c) if i < hf and j < wf]
            for i, j in src:
                out[i * wf + j] = v[r, c] / len(src)
    return out


def swin_relevance(blocks, products, start_block: int = 0) -> np.ndarray:
    """(H_0, W_0) float64: the mean of the last stage's relevance rows over stage-0 tokens, less the
    identity path's share.
    blocks: the analysis's SwinBlocks (forward order); products: P_b per block; blocks before
    `start_block` (counted over all stages) keep R as it is."""
    if len(products) != len(blocks):
        raise ValueError(f"{len(products)} gradient records for {len(blocks)} blocks")
    if not 0 <= int(start_block) < len(blocks):
        raise ValueError(f"start_block {start_block} is out of range (the model has {len(blocks)} blocks: "
                         f"0..{len(blocks) - 1})")
    sizes = {}
    for b in blocks:
        sizes[b.stage] = b.feature_size
    last = blocks[-1].stage
    h, w = sizes[last]
    v = np.full(h * w, 1.0 / (h * w))  # Swin pools the last tokens by their mean
    base = v.copy()  # the same with no attention: the residual path alone
    for stage in range(last, -1, -1):
        for b in reversed([b for b in blocks if b.stage == stage]):
            if b.index >= start_block:
                idx, abar = embedded_abar(b, products[b.index])
                v = v + _times(v, idx, abar)
        if stage > 0:
            v = _unmerge(v, sizes[stage], sizes[stage - 1])
            base = _unmerge(base, sizes[stage], sizes[stage - 1])
    return (v - base).reshape(sizes[0])
