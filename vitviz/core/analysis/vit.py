"""The result of analysing one image with a ViT: attention per layer and the views derived from it.

Plain numpy, no torch: the GUI, the CLI and scripts read this object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np
from PIL import Image

from ..geometry import TokenGrid
from .heads import fuse_heads
from .common import ClassifierMixin
from .rollout import RolloutEngine

Query = Union[str, Sequence[int]]  # "cls" or (row, col)
Head = Union[int, str]  # head index or "mean" | "max" | "min"


@dataclass
class ViTAnalysis(ClassifierMixin):
    family = "vit"

    image: Image.Image  # the original image, RGB
    grid: TokenGrid
    model_name: str
    weights: str
    trained: bool
    device: str
    model_input: np.ndarray  # (3, H, W) float32: exactly what the model saw (normalised)
    attn: np.ndarray  # (layers, heads, N, N), rows = queries; float16 unless asked otherwise
    logits: np.ndarray | None  # (classes,) or None for a headless checkpoint
    class_names: list[str] | None
    num_prefix_tokens: int = 1  # class token (+ distillation / register tokens) before the patches
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "forward", "total", ...
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    _rollout_cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_layers(self) -> int:
        return self.attn.shape[0]

    @property
    def num_heads(self) -> int:
        return self.attn.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.attn.shape[-1]

    def attention(self, layer: int) -> np.ndarray:
        """Layer `layer`'s attention, float32 [heads, N, N]; N counts the class token at index 0."""
        return self.attn[self._layer(layer)].astype(np.float32)

    def token_index(self, query: Query) -> int:
        """Index into N of "cls" or a (row, col) patch."""
        if isinstance(query, str):
            if query.lower() != "cls":
                raise ValueError(f"query must be 'cls' or (row, col), not {query!r}")
            return 0
        row, col = (int(q) for q in query)
        if not (0 <= row < self.grid.rows and 0 <= col < self.grid.cols):
            raise IndexError(f"patch ({row}, {col}) outside the {self.grid.rows}x{self.grid.cols} grid")
        return self.num_prefix_tokens + self.grid.index(row, col)

    def _patch_values(self, vector: np.ndarray) -> np.ndarray:
        """(..., N) -> (..., rows, cols): drop the prefix tokens, lay the patches out row-major."""
        p = self.num_prefix_tokens
        return vector[..., p:].reshape(*vector.shape[:-1], self.grid.rows, self.grid.cols)

    def attention_map(self, layer: int, head: Head, query: Query = "cls",
                      direction: str = "from") -> np.ndarray:
        """[rows, cols] float32. direction "from": where the query looks (its row);
        "to": how much every patch looks at the query (its column)."""
        q = self.token_index(query)
        a = self.attn[self._layer(layer)]  # (heads, N, N)
        vec = a[:, q, :] if direction == "from" else a[:, :, q]  # (heads, N)
        return self._patch_values(fuse_heads(vec, head, axis=0).astype(np.float32))

    def head_maps(self, query: Query = "cls", direction: str = "from") -> np.ndarray:
        """Every head of every layer for one query: (layers, heads, rows, cols) float32."""
        q = self.token_index(query)
        vec = self.attn[:, :, q, :] if direction == "from" else self.attn[:, :, :, q]
        return self._patch_values(vec.astype(np.float32))

    def rollout_matrix(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
        """(N, N) rollout over all layers, cached (vitviz.core.analysis.rollout.RolloutEngine)."""
        return self.rollout_engine().matrix(head_fusion, discard_ratio)

    def rollout(self, head_fusion: str = "mean", discard_ratio: float = 0.0,
                query: Query = "cls") -> np.ndarray:
        """Attention rollout for `query` as [rows, cols] float32: one row, L vector-matrix products
        on layers prepared once per fusion and discard ratio (no N x N product)."""
        row = self.rollout_engine().row(self.token_index(query), head_fusion, discard_ratio)
        return self._patch_values(row).astype(np.float32)

    def rollout_engine(self) -> RolloutEngine:
        """The rollout state of this analysis; `.prepare_in_background()` readies every fusion."""
        if "engine" not in self._rollout_cache:  # setdefault: the worker and GUI threads may race
            self._rollout_cache.setdefault("engine", RolloutEngine(self.attn))
        return self._rollout_cache["engine"]

    def attention_steps(self, layer: int, head: int, query: Query = "cls"):
        """q, k, v, logits, weights, output of one head for one query, from the block's own weights
        (vitviz.core.analysis.steps_vit); needs the model attached (vitviz.analyze attaches it)."""
        from .steps_vit import vit_attention_steps

        return vit_attention_steps(self, layer, head, query)

    def _layer(self, layer: int) -> int:
        if not -self.num_layers <= layer < self.num_layers:
            raise IndexError(f"layer {layer} out of range (model has {self.num_layers})")
        return layer
