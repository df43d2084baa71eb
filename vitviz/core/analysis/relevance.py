"""Class-specific maps from attention A_l and its gradient dA_l = dy_t/dA_l, given as P_l = A_l * dA_l
(layers, heads, N, N), rows = queries. Pure numpy; every result is one row of a product of L matrices,
computed as L vector-matrix products (no N x N product).

Gradient rollout (jacobgil/vit-explain's grad_rollout, its two published bugs fixed):
    F_l = max(mean_h P_l, 0), its lowest `discard_ratio` entries set to 0 (never [0, 0]),
    F'_l = rownorm((F_l + I) / 2)     (each ROW sums to 1; vit-explain divides columns: its issue #16)
    R = F'_{L-1} ... F'_0,  map = R[query, patches]
    layer l's attention with layer l's gradient (vit-explain pairs l with L-1-l: its issue #6).

Relevance (Chefer, Gur, Wolf, "Generic Attention-model Explainability...", ICCV 2021, eq. 5-6 for
self-attention):
    Abar_l = mean_h max(P_l, 0)       (clamped per head, then averaged)
    R <- R + Abar_l R for l = start_layer .. L-1, from R = I;  map = R[query, patches]
"""
from __future__ import annotations

import numpy as np


def _check_products(p: np.ndarray) -> np.ndarray:
    if p.ndim != 4 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"expected (layers, heads, N, N) attention x gradient, got shape {p.shape}")
    return p


def grad_rollout_layers(p: np.ndarray, discard_ratio: float = 0.9) -> np.ndarray:
    """(L, N, N) float64: F'_l of every layer (see the module docstring)."""
    p = _check_products(p)
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {discard_ratio}")
    n = p.shape[-1]
    fused = np.maximum(p.astype(np.float64).mean(axis=1), 0.0)  # mean over heads, then negatives -> 0
    k = int(n * n * float(discard_ratio))
    eye = np.eye(n)
    out = np.empty_like(fused)
    for layer, f in enumerate(fused):
        flat = f.reshape(-1).copy()
        if k > 0:
            lowest = np.argpartition(flat, k - 1)[:k]
            flat[lowest[lowest != 0]] = 0.0  # the class token's own link [0, 0] always stays
        a = (flat.reshape(n, n) + eye) / 2
        out[layer] = a / a.sum(axis=-1, keepdims=True)
    return out


def grad_rollout_row(p: np.ndarray, query: int = 0, discard_ratio: float = 0.9) -> np.ndarray:
    """(N,) row `query` of F'_{L-1} ... F'_0."""
    layers = grad_rollout_layers(p, discard_ratio)
    v = np.zeros(layers.shape[-1])
    v[query] = 1.0
    for f in layers[::-1]:  # e_q F'_{L-1} F'_{L-2} ... F'_0
        v = v @ f
    return v


def relevance_layers(p: np.ndarray) -> np.ndarray:
    """(L, N, N) float64: Abar_l = mean over heads of max(A * dA, 0)."""
    return np.maximum(_check_products(p).astype(np.float64), 0.0).mean(axis=1)


def relevance_row(p: np.ndarray, query: int = 0, start_layer: int = 0) -> np.ndarray:
    """(N,) row `query` of (I + Abar_{L-1}) ... (I + Abar_start): Chefer's R after the last block."""
    abar = relevance_layers(p)
    L = abar.shape[0]
    if not 0 <= int(start_layer) < L:
        raise ValueError(f"start_layer {start_layer} is out of range (the model has {L} layers: 0..{L - 1})")
    v = np.zeros(abar.shape[-1])
    v[query] = 1.0
    for a in abar[int(start_layer):][::-1]:  # e_q (I + Abar_{L-1}) ... (I + Abar_start)
        v = v + v @ a
    return v


def head_weighted(p: np.ndarray, query: int = 0) -> np.ndarray:
    """(L, H, N): each head's gradient-weighted attention max(A * dA, 0) for one query (its row):
    which heads matter for this class."""
    return np.maximum(_check_products(p)[:, :, query, :], 0.0).astype(np.float32)
