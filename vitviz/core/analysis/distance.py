"""Mean attention distance per (layer, head), the ViT paper's Fig. 7 (right).

For each patch query i of a layer's head h:  d_i = sum_j Â_ij ||p_i - p_j||,  with
Â_ij = A_ij / sum_k A_ik over the patch keys j, k only (prefix tokens — class, distillation,
register — dropped from queries and keys; the row renormalised, which the widely copied notebook
skips, biasing distances low), and p the patch centres in model-input pixels. The head's value is
the mean of d_i over the patch queries.
A patch query whose attention on the patch keys is exactly 0 (all of it on prefix tokens, or float16
underflow, as in register-hungry heads) has no renormalised row: it is left out of the mean rather
than counted as distance 0; a head where no query has any has NaN.
"""
from __future__ import annotations

import numpy as np


def patch_centres(grid) -> np.ndarray:
    """(rows * cols, 2) patch centres (x, y) in model-input pixels, row-major like the tokens."""
    rows, cols = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    return np.stack([(cols.ravel() + 0.5) * grid.cell_w, (rows.ravel() + 0.5) * grid.cell_h], axis=1)


def pairwise_distances(grid) -> np.ndarray:
    """(P, P) Euclidean distances between patch centres, in model-input pixels."""
    p = patch_centres(grid)
    return np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))


def patch_block(attn_layer: np.ndarray, num_prefix: int) -> np.ndarray:
    """(heads, N, N) -> (heads, P, P) float64: patch queries x patch keys, rows renormalised."""
    a = np.asarray(attn_layer[:, num_prefix:, num_prefix:], np.float64)
    s = a.sum(-1, keepdims=True)
    return a / np.where(s > 0, s, 1.0)


def mean_attention_distance(attn: np.ndarray, grid, num_prefix: int) -> np.ndarray:
    """attn (layers, heads, N, N) -> (layers, heads) float64, in model-input pixels."""
    dist = pairwise_distances(grid)
    out = np.empty(attn.shape[:2])
    for layer in range(attn.shape[0]):  # one layer at a time: (heads, P, P) float64 at most
        a = patch_block(attn[layer], num_prefix)
        d = (a * dist).sum(-1)  # (heads, P)
        has = a.sum(-1) > 0  # queries with some attention on the patch keys
        n = has.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[layer] = np.where(n > 0, np.where(has, d, 0.0).sum(-1) / n, np.nan)
    return out


def vit(analysis) -> np.ndarray:
    return mean_attention_distance(analysis.attn, analysis.grid, analysis.num_prefix_tokens)
