"""One attention head's computation for one query, step by step, with the model's own numbers.

`AttentionSteps` is what `a.attention_steps(...)` returns for every family (steps_vit, steps_swin,
steps_detr build it). For the query token's q (d,), the keys k (N, d) and values v (N, d):

    logits  = k q * scale            scale = 1/sqrt(d) (Swin v2: cosine similarity * learned scale)
    scores  = logits + bias + mask   bias, mask: Swin's relative position bias and shifted-window mask
    weights = softmax(scores)        the attention row the model used
    output  = weights @ v            this head's output (d,)

then `head_projection` = the head's share of the output projection (W_o[:, head] @ output), and the
attention sublayer's output and the residual stream before/after it. Plain numpy, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PatchEmbeddingStep:
    """ViT's first step for the query patch: pixels -> linear embedding -> + position -> token."""

    pixels: np.ndarray  # (P, P, 3) the model input's patch (normalised, as the model saw it)
    embedding: np.ndarray  # (D,) conv_proj of the patch (the linear patch embedding)
    position: np.ndarray  # (D,) the position embedding added to it
    token: np.ndarray  # (D,) embedding + position: the token entering layer 0
    linear: bool  # True when conv_proj is one linear map per P x P patch (kernel = stride = P)

    def norms(self) -> dict[str, float]:
        return {name: float(np.linalg.norm(getattr(self, name)))
                for name in ("pixels", "embedding", "position", "token")}


@dataclass(frozen=True)
class AttentionSteps:
    family: str
    where: str  # "layer 3, head 1" / "stage 0 block 1, head 0" / "decoder layer 5 (cross), head 2"
    head: int
    query: int  # index of the query token among the model's queries (ViT: into N)
    query_position: tuple[int, int] | None  # (row, col) of the query on the token grid, None: cls / object query
    q: np.ndarray  # (d,)
    k: np.ndarray  # (N, d)
    v: np.ndarray  # (N, d)
    scale: float  # the factor on q.k (1/sqrt(d); Swin v2: exp(logit_scale) on the cosine)
    logits: np.ndarray  # (N,) k q * scale
    bias: np.ndarray  # (N,) added before softmax (zeros where the family has none)
    mask: np.ndarray  # (N,) added before softmax (0 or -100 for Swin; -inf for padding keys)
    weights: np.ndarray  # (N,) softmax(logits + bias + mask)
    output: np.ndarray  # (d,) weights @ v
    positions: np.ndarray  # (N, 2) int (row, col) of each key on its grid; -1 for a non-grid token
    valid: np.ndarray  # (N,) bool: key is a real image token (not a prefix token or padding)
    grid_shape: tuple[int, int]  # (rows, cols) of the grid the positions refer to
    head_projection: np.ndarray  # (D,) W_o[:, head slice] @ output: this head's share of the sublayer
    attention_output: np.ndarray  # (D,) the attention sublayer's output (all heads, projection bias)
    residual_in: np.ndarray  # (D,) the query token's residual stream entering the sublayer
    residual_out: np.ndarray  # (D,) after the sublayer is added (and normed, where the model does)
    captured: np.ndarray | None = None  # (N,) the attention row the capture stored, for comparison
    key_labels: tuple[str, ...] = ()  # names of non-grid keys (ViT prefix tokens), in index order
    embedding: PatchEmbeddingStep | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scores(self) -> np.ndarray:
        """logits + bias + mask: what goes into softmax."""
        return self.logits + self.bias + self.mask

    @property
    def d(self) -> int:
        return int(self.q.shape[0])

    def top_k(self, k: int = 5) -> np.ndarray:
        """Indices of the k image-token keys with the largest weights, largest first (ties: lower index)."""
        idx = np.flatnonzero(self.valid)
        order = np.lexsort((idx, -self.weights[idx]))
        return idx[order[: max(0, int(k))]]

    def weight_outside(self, k: int = 5) -> float:
        """Sum of the weights of every key outside the top-k (prefix tokens and padding included)."""
        return float(1.0 - self.weights[self.top_k(k)].sum())

    def smallest_weight(self) -> tuple[int, float]:
        """(index, weight) of the key with the smallest weight: softmax never returns 0 exactly."""
        i = int(np.argmin(self.weights))
        return i, float(self.weights[i])

    def output_from(self, keys) -> np.ndarray:
        """(d,) the part of `output` the given keys contribute: sum_j w_j v_j over them."""
        keys = np.asarray(keys, dtype=int)
        return self.weights[keys] @ self.v[keys]

    def norms(self) -> dict[str, float]:
        n = np.linalg.norm
        return {"q": float(n(self.q)), "output": float(n(self.output)),
                "head_projection": float(n(self.head_projection)),
                "attention_output": float(n(self.attention_output)),
                "residual_in": float(n(self.residual_in)), "residual_out": float(n(self.residual_out))}

    def grid_map(self, values: np.ndarray) -> np.ndarray:
        """(N,) per-key values -> (rows, cols) float32 at the keys' grid positions, NaN elsewhere."""
        out = np.full(self.grid_shape, np.nan, np.float32)
        p = self.positions[self.valid]
        out[p[:, 0], p[:, 1]] = np.asarray(values)[self.valid]
        return out


_CACHE_ATTR = "_vitviz_steps_input"


def cached_input(analysis, key: tuple, compute):
    """The last block input computed for `analysis`, by key: clicking other queries or heads of the
    same block reuses it instead of running the model up to the block again (one entry kept)."""
    hit = getattr(analysis, _CACHE_ATTR, None)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    object.__setattr__(analysis, _CACHE_ATTR, (key, value))  # not a field: in no repr or comparison
    return value


def softmax(x: np.ndarray) -> np.ndarray:
    """float64 softmax of a 1-D array; -inf entries get exactly 0."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def to_numpy(t) -> np.ndarray:
    """A torch tensor -> float64 numpy copy."""
    return t.detach().to("cpu").double().numpy().copy()
