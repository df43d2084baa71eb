"""The named peer of the rollout rows: the rollout of the popular vit-explain script
(jacobgil/vit-explain, vit_rollout.py), rewritten here from its published algorithm.

Per call it recomputes everything from the per-layer attention it captured (a list of (1, H, N, N)
float32 CPU tensors, as its attn_drop hooks store them): per layer head fusion in torch, the
int(N*N*ratio) lowest entries zeroed by topk (never flat index 0), identity added and halved, a
normalisation, and the matmul chain; then the class token's row, reshaped and divided by its max.
Its normalisation `a / a.sum(dim=-1)` broadcasts over the last axis, i.e. divides COLUMN j by the
sum of row j; `row_normalise=True` divides each row by its own sum instead (the paper's rollout),
for comparing values with vitviz. The cost is the same either way.
"""
from __future__ import annotations

import numpy as np


def rollout_result(attentions, discard_ratio: float, head_fusion: str, row_normalise: bool = False):
    """The script's `result` matrix, (1, N, N) torch float32."""
    import torch

    result = torch.eye(attentions[0].size(-1))
    with torch.no_grad():
        for attention in attentions:
            if head_fusion == "mean":
                fused = attention.mean(axis=1)
            elif head_fusion == "max":
                fused = attention.max(axis=1)[0]
            elif head_fusion == "min":
                fused = attention.min(axis=1)[0]
            else:
                raise ValueError(f"head fusion {head_fusion!r} not supported")
            flat = fused.view(fused.size(0), -1)
            _, indices = flat.topk(int(flat.size(-1) * discard_ratio), -1, False)
            indices = indices[indices != 0]
            flat[0, indices] = 0
            eye = torch.eye(fused.size(-1))
            a = (fused + 1.0 * eye) / 2
            a = a / (a.sum(dim=-1, keepdim=True) if row_normalise else a.sum(dim=-1))
            result = torch.matmul(a, result)
    return result


def rollout(attentions, discard_ratio: float, head_fusion: str) -> np.ndarray:
    """What the script's rollout() returns: the class token's map over the patches, max = 1."""
    result = rollout_result(attentions, discard_ratio, head_fusion)
    mask = result[0, 0, 1:]
    width = int(mask.size(-1) ** 0.5)
    mask = mask.reshape(width, width).numpy()
    return mask / np.max(mask)
