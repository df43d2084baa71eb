"""Head fusion and per-token attention maps: pure numpy."""
from __future__ import annotations

import numpy as np

FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: np.ndarray, head: int | str, axis: int = -3) -> np.ndarray:
    """Pick one head (int) or fuse all heads ("mean" | "max" | "min") along `axis`."""
    if isinstance(head, (int, np.integer)):
        return np.take(attn, int(head), axis=axis)
    if head == "mean":
        return attn.mean(axis=axis, dtype=np.float32)
    if head == "max":
        return attn.max(axis=axis)
    if head == "min":
        return attn.min(axis=axis)
    raise ValueError(f"head must be an int or one of {FUSIONS}, not {head!r}")
