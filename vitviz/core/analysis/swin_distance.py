"""Swin: mean attention distance and attention entropy per (block, head), inside the windows.

A block attends within windows of its stage's grid, in rolled coordinates when it is shifted. Each
window slot is put back at its true image position (vitviz.core.analysis.windows), so for a real
query token i of a window:  d_i = sum_j Â_ij ||p_i - p_j||  over the window's real key tokens j
(padding slots dropped, the row renormalised over the real keys), p the token centres in model-input
pixels (stage s: cells of patch * 2^s pixels). The head's value is the mean of d_i over every real
token of the stage. Entropy: the mean over real query tokens of -sum_j A_ij log A_ij over all the
window's keys, in nats. Stages differ in head count: the table is (blocks, most heads), NaN where a
block has fewer.
"""
from __future__ import annotations

import numpy as np

from . import windows as win


def _table(analysis) -> np.ndarray:
    return np.full((len(analysis.blocks), max(b.heads for b in analysis.blocks)), np.nan)


def _real(block):
    coords = win.window_token_coords(block.layout)  # (windows, N, 2) image (row, col)
    return coords, (coords[..., 0] < block.layout.height) & (coords[..., 1] < block.layout.width)


def attention_distance(analysis) -> np.ndarray:
    out = _table(analysis)
    for b in analysis.blocks:
        coords, real = _real(b)
        g = analysis.stage_grid(b.stage)
        p = (coords + 0.5) * np.array([g.cell_h, g.cell_w])  # (windows, N, 2) (y, x) input pixels
        dist = np.sqrt(((p[:, :, None] - p[:, None, :]) ** 2).sum(-1))  # (windows, N, N)
        a = np.asarray(analysis.attn[b.index], np.float64) * real[:, None, None, :]  # real keys only
        a = a / np.maximum(a.sum(-1, keepdims=True), 1e-300)
        d = (a * dist[:, None]).sum(-1)  # (windows, heads, N)
        w = real[:, None, :]
        out[b.index, : b.heads] = (d * w).sum((0, 2)) / w.sum((0, 2))
    return out


def attention_entropy(analysis) -> np.ndarray:
    out = _table(analysis)
    for b in analysis.blocks:
        _, real = _real(b)
        a = np.asarray(analysis.attn[b.index], np.float64)
        h = -np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0).sum(-1)  # (windows, heads, N)
        w = real[:, None, :]
        out[b.index, : b.heads] = (h * w).sum((0, 2)) / w.sum((0, 2))
    return out
