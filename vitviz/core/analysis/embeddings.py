"""What the model learned to embed: position-embedding similarity and patch-embedding filters
(the ViT paper's Fig. 7, centre and left). Both read the model's own parameters, so the analysis must
have its model attached (vitviz.analyze / analyze_many attach it).

Position similarity: S[r, c, r', c'] = cos(e_(r,c), e_(r',c')) for the patch position embeddings e
the forward added (prefix rows dropped) — resampled to the input's grid exactly as the model does
when the input size differs from the size the embedding was stored for.

Filter components: the conv_proj filters W (d, 3, P, P) flattened to d vectors of 3*P*P, centred,
their principal directions (right singular vectors, largest first), each shown as a (P, P, 3) image
scaled to [0, 1] (min -> 0, max -> 1).
"""
from __future__ import annotations

import math

import numpy as np


def _module(analysis):
    from ..gradients import model_of

    return model_of(analysis).module


def position_embedding_used(model, rows: int, cols: int) -> np.ndarray:
    """(rows * cols, d) float64: the patch position embedding a forward on a rows x cols grid adds."""
    import torch

    from ..models.vit_tokens import resample_pos_embedding

    pos = model.encoder.pos_embedding.detach()  # (1, prefix + g*g, d)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    side = math.isqrt(pos.shape[1] - prefix)
    with torch.no_grad():
        used = resample_pos_embedding(pos.float().cpu(), prefix, (side, side), (rows, cols))
    return used[0, prefix:].double().numpy()


def cosine_similarity_grid(embedding: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows * cols, d) -> (rows, cols, rows, cols) cosine similarities."""
    e = np.asarray(embedding, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return (e @ e.T).reshape(rows, cols, rows, cols)


def position_similarity(analysis) -> np.ndarray:
    g = analysis.grid
    return cosine_similarity_grid(position_embedding_used(_module(analysis), g.rows, g.cols), g.rows, g.cols)


def filter_components(weight: np.ndarray, k: int = 28) -> np.ndarray:
    """conv weight (d, 3, P, P) -> (k, P, P, 3) in [0, 1]: principal components of the filters."""
    w = np.asarray(weight, np.float64)
    d, c, ph, pw = w.shape
    x = w.reshape(d, -1)
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[: min(k, vt.shape[0])].reshape(-1, c, ph, pw).transpose(0, 2, 3, 1)
    lo = comps.min(axis=(1, 2, 3), keepdims=True)
    hi = comps.max(axis=(1, 2, 3), keepdims=True)
    return (comps - lo) / np.where(hi > lo, hi - lo, 1.0)


def patch_filter_components(analysis, k: int = 28) -> np.ndarray:
    conv = _module(analysis).conv_proj
    if not hasattr(conv, "weight"):  # a convolutional stem: no linear per-patch filters to show
        raise ValueError("this model embeds patches with a convolutional stem, not one linear "
                         "filter per patch: it has no patch-embedding filters")
    return filter_components(conv.weight.detach().float().cpu().numpy(), k)
