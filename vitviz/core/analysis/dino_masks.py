"""DINO's head masks (facebookresearch/dino, visualize_attention.py).

For head h of a layer, take the class token's attention over the patches a_j = A[h, 0, j] (prefix
keys dropped), normalise it to sum 1, sort ascending and keep the patches whose cumulative sum is
above 1 - threshold: the smallest set of patches (the largest weights first) that holds at least
`threshold` of the mass.
"""
from __future__ import annotations

import numpy as np


def head_masks(attn_layer: np.ndarray, num_prefix: int, rows: int, cols: int,
               threshold: float = 0.6) -> np.ndarray:
    """attn_layer (heads, N, N) -> (heads, rows, cols) bool."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], not {threshold}")
    a = np.asarray(attn_layer[:, 0, num_prefix:], np.float64)  # (heads, P): class token -> patches
    s = a.sum(-1, keepdims=True)
    a = a / np.where(s > 0, s, 1.0)  # a head giving the patches no mass at all: an empty mask
    order = np.argsort(a, axis=-1, kind="stable")
    cum = np.cumsum(np.take_along_axis(a, order, -1), axis=-1)
    keep_sorted = (cum > 1.0 - threshold) & (s > 0)
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, -1)
    return keep.reshape(-1, rows, cols)


def vit(analysis, threshold: float = 0.6, layer: int = -1) -> np.ndarray:
    if analysis.num_prefix_tokens < 1:
        raise ValueError("DINO masks need a class token")
    return head_masks(analysis.attention(layer), analysis.num_prefix_tokens, analysis.grid.rows,
                      analysis.grid.cols, threshold)


def mask_outline(mask: np.ndarray, cell_w: float, cell_h: float) -> np.ndarray:
    """(rows, cols) bool -> (K, 2, 2) line segments ((x0, y0), (x1, y1)) in pixels: the cell edges
    between a masked cell and an unmasked one (or the grid's edge), i.e. the mask's contour."""
    m = np.pad(np.asarray(mask, bool), 1)
    segs = []
    # horizontal edges: between row r-1 and r of the unpadded grid (padded rows r and r+1)
    for r, c in np.argwhere(m[:-1, 1:-1] != m[1:, 1:-1]):
        segs.append(((c * cell_w, r * cell_h), ((c + 1) * cell_w, r * cell_h)))
    for r, c in np.argwhere(m[1:-1, :-1] != m[1:-1, 1:]):
        segs.append(((c * cell_w, r * cell_h), (c * cell_w, (r + 1) * cell_h)))
    return np.asarray(segs, np.float64).reshape(-1, 2, 2)
