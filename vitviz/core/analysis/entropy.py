"""Attention entropy per (layer, head): the mean over patch queries i of
H_i = -sum_j A_ij log A_ij over all keys j (prefix tokens included; 0 log 0 = 0), in nats.
A head attending to one token has 0; uniform attention over N keys has log N.
"""
from __future__ import annotations

import numpy as np


def attention_entropy(attn: np.ndarray, num_prefix: int) -> np.ndarray:
    """attn (layers, heads, N, N) -> (layers, heads) float64, nats."""
    out = np.empty(attn.shape[:2])
    for layer in range(attn.shape[0]):
        a = np.asarray(attn[layer, :, num_prefix:, :], np.float64)  # patch queries, all keys
        plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
        out[layer] = -plogp.sum(-1).mean(-1)
    return out


def vit(analysis) -> np.ndarray:
    return attention_entropy(analysis.attn, analysis.num_prefix_tokens)
