"""Attention rollout (Abnar & Zuidema 2020), vectorised over layers and queries."""
from __future__ import annotations

import numpy as np

from .heads import fuse_heads


def _discard_lowest(fused: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the lowest `ratio` of each layer's entries, never the [0, 0] (class->class) entry, as the
    usual rollout scripts do. fused: (L, N, N)."""
    if ratio <= 0:
        return fused
    L, N, _ = fused.shape
    k = int(N * N * ratio)
    if k == 0:
        return fused
    flat = fused.reshape(L, N * N).copy()
    keep0 = flat[:, 0].copy()
    idx = np.argpartition(flat, k - 1, axis=1)[:, :k]  # the k smallest of each layer
    np.put_along_axis(flat, idx, 0.0, axis=1)
    flat[:, 0] = keep0
    return flat.reshape(L, N, N)


def rollout_matrix(attn: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0,
                   start_layer: int = 0, end_layer: int | None = None) -> np.ndarray:
    """Rollout over layers [start_layer, end_layer) of attn (L, H, N, N) -> (N, N) float64.

    Row i is how much input token j flows into token i at the output: per layer the heads are fused,
    the residual is added as the identity, A = 0.5 * (W + I), and each ROW is renormalised to sum to 1
    (rows are queries; some well-known scripts divide by the wrong axis here)."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError("discard_ratio must be in [0, 1)")
    layers = attn[start_layer:end_layer]
    fused = fuse_heads(layers, head_fusion, axis=1).astype(np.float64)  # (L, N, N)
    fused = _discard_lowest(fused, discard_ratio)
    N = fused.shape[-1]
    a = 0.5 * fused + 0.5 * np.eye(N)
    a /= a.sum(axis=-1, keepdims=True)
    out = a[0]
    for layer in a[1:]:
        out = layer @ out  # later layers act on the result of earlier ones
    return out


def rollout_reference(attn: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Straightforward per-layer, per-row loop: the independent check used by tests and the benchmark."""
    L, H, N, _ = attn.shape
    result = np.eye(N)
    for layer in range(L):
        per_head = attn[layer].astype(np.float64)
        fused = {"mean": per_head.mean(0), "max": per_head.max(0), "min": per_head.min(0)}[head_fusion]
        if discard_ratio > 0:
            flat = fused.flatten()
            k = int(flat.size * discard_ratio)
            if k:
                order = np.argsort(flat, kind="stable")[:k]
                order = order[order != 0]
                flat[order] = 0
            fused = flat.reshape(N, N)
        a = np.empty((N, N))
        for i in range(N):
            row = 0.5 * fused[i]
            row[i] += 0.5
            a[i] = row / row.sum()
        result = a @ result
    return result
