"""The result of analysing one image with DETR: detections and the attention behind them.

Plain numpy, no torch: the GUI, the CLI and scripts read this object.

Coordinates. Boxes and points are in ORIGINAL-image pixels (x right, y down). The feature map the
transformer sees is `grid` (a TokenGrid, `feature_shape` = (h, w) cells, each `stride` model-input
pixels square); cells are flattened row-major, cell index = row * w + col, exactly as the captured
attention matrices index them. Cells made only of padding (bottom/right of the padded input) carry
no attention: every map returns NaN there, never a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, Union

import numpy as np
from PIL import Image

from ..geometry import TokenGrid
from .common import ModelInputMixin
from .heads import fuse_heads

Head = Union[int, str]  # head index or "mean" | "max" | "min"
Point = Sequence[float]  # (x, y) in original-image pixels
Cell = Sequence[int]  # (row, col) on the feature map


class Detection(NamedTuple):
    query: int  # which decoder query made it: the index into every per-query attention
    label: int  # class id (index into class_names; COCO ids 1..90, gaps named "N/A")
    name: str  # class name
    score: float  # softmax probability of that class (no-object included in the softmax)
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in original-image pixels, unclipped


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def boxes_to_pixels(boxes_cxcywh: np.ndarray, width: float, height: float) -> np.ndarray:
    """(..., 4) DETR boxes (cx, cy, w, h) relative to the unpadded image -> (..., 4)
    (x0, y0, x1, y1) in original pixels. DETR's resize keeps the whole image, so the fractions
    apply to the original image directly; padding and the resize scale never enter."""
    b = np.asarray(boxes_cxcywh, np.float64)
    cx, cy, bw, bh = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)
    return xyxy * np.array([width, height, width, height])


@dataclass
class DetrAnalysis(ModelInputMixin):
    family = "detr"

    image: Image.Image  # the original image, RGB
    grid: TokenGrid  # the feature map over the original image (stride x stride input px cells)
    model_name: str
    weights: str
    trained: bool
    device: str
    model_input: np.ndarray  # (3, H, W) float32: exactly what the model saw (normalised, padded)
    logits: np.ndarray  # (Q, classes + 1) float32, last column = no-object
    boxes: np.ndarray  # (Q, 4) float32 (cx, cy, w, h) relative to the unpadded image
    enc_attn: np.ndarray  # (L_enc, heads, hw, hw): encoder self-attention, rows = queries
    dec_self: np.ndarray  # (L_dec, heads, Q, Q): decoder self-attention among object queries
    dec_cross: np.ndarray  # (L_dec, heads, Q, hw): decoder cross-attention, queries -> cells
    pad_mask: np.ndarray  # (h, w) bool, True = padding cell
    class_names: list[str] | None
    stride: int = 32  # model-input pixels per feature cell (16 for DC5)
    layer_logits: np.ndarray | None = None  # (L_dec, Q, classes + 1): every decoder layer's head
    layer_boxes: np.ndarray | None = None  # (L_dec, Q, 4)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "forward", "total", ...
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        hw = self.grid.rows * self.grid.cols
        if self.pad_mask.shape != self.grid.shape:
            raise ValueError(f"pad mask {self.pad_mask.shape} does not match grid {self.grid.shape}")
        if self.enc_attn.shape[-1] != hw or self.dec_cross.shape[-1] != hw:
            raise ValueError(f"attention over {self.dec_cross.shape[-1]} cells, grid has {hw}")

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def feature_shape(self) -> tuple[int, int]:
        """(h, w) of the feature map (padding included)."""
        return self.grid.shape

    @property
    def valid_shape(self) -> tuple[int, int]:
        """(h, w) of the part of the feature map that is not padding (padding is bottom/right)."""
        valid = ~self.pad_mask
        return int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())

    @property
    def num_layers(self) -> int:
        """Decoder layers."""
        return self.dec_cross.shape[0]

    @property
    def num_encoder_layers(self) -> int:
        return self.enc_attn.shape[0]

    @property
    def num_heads(self) -> int:
        return self.dec_cross.shape[1]

    @property
    def num_queries(self) -> int:
        return self.dec_cross.shape[2]

    # -- detections ----------------------------------------------------------------------------
    def probabilities(self, layer: int | None = None) -> np.ndarray:
        """(Q, classes + 1) softmax of the final logits, or of decoder `layer`'s auxiliary head."""
        if layer is None:
            return softmax(self.logits)
        if self.layer_logits is None:
            raise ValueError("this analysis has no per-layer predictions")
        return softmax(self.layer_logits[self._layer(layer, self.num_layers)])

    def class_name(self, label: int) -> str:
        names = self.class_names
        return names[label] if names is not None and 0 <= label < len(names) else f"class {label}"

    def detections(self, threshold: float = 0.7, layer: int | None = None) -> list[Detection]:
        """Queries whose best real class beats `threshold`, highest score first (DETR's
        PostProcess: softmax over all outputs, no-object dropped, then the best class)."""
        probs = self.probabilities(layer)[:, :-1]
        boxes = self.boxes if layer is None else self.layer_boxes[self._layer(layer, self.num_layers)]
        scores = probs.max(axis=-1)
        labels = probs.argmax(axis=-1)
        keep = np.flatnonzero(scores > threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        w, h = self.image.size
        px = boxes_to_pixels(boxes[keep], w, h)
        return [Detection(int(q), int(labels[q]), self.class_name(int(labels[q])), float(scores[q]),
                          tuple(float(v) for v in px[i])) for i, q in enumerate(keep)]

    def best_scores(self) -> np.ndarray:
        """(Q,) each query's best real-class probability (to pick a threshold)."""
        return self.probabilities()[:, :-1].max(axis=-1)

    # -- geometry ------------------------------------------------------------------------------
    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """The feature cell (row, col) holding original pixel (x, y), or None outside the image."""
        cell = self.grid.token_at(x, y)
        if cell is None or self.pad_mask[cell]:
            return None
        return cell

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Centre of feature cell (row, col) in original pixels."""
        x0, y0, x1, y1 = self.grid.rect(row, col)
        return (x0 + x1) / 2, (y0 + y1) / 2

    def _cell_index(self, point: Point | None, cell: Cell | None) -> int:
        if (point is None) == (cell is None):
            raise ValueError("give either point=(x, y) in original pixels or cell=(row, col)")
        if point is not None:
            x, y = (float(v) for v in point)
            found = self.cell_at(x, y)
            if found is None:
                raise ValueError(f"point ({x:.1f}, {y:.1f}) is outside the image")
            row, col = found
        else:
            row, col = (int(v) for v in cell)
            if not (0 <= row < self.grid.rows and 0 <= col < self.grid.cols):
                raise IndexError(f"cell ({row}, {col}) outside the {self.grid.rows}x{self.grid.cols} "
                                 "feature map")
            if self.pad_mask[row, col]:
                raise ValueError(f"cell ({row}, {col}) is padding: it has no attention to show")
        return self.grid.index(row, col)

    def _masked(self, values: np.ndarray) -> np.ndarray:
        """(..., hw) -> (..., h, w) float32 with NaN on padding cells."""
        out = values.astype(np.float32).reshape(*values.shape[:-1], *self.grid.shape)
        out[..., self.pad_mask] = np.nan
        return out

    # -- attention maps ------------------------------------------------------------------------
    def cross_attention(self, layer: int, head: Head, query_index: int) -> np.ndarray:
        """[h, w] float32: where object query `query_index` looks in decoder `layer`
        (one head, or all fused: "mean" | "max" | "min"). NaN on padding."""
        q = self._query(query_index)
        a = self.dec_cross[self._layer(layer, self.num_layers), :, q, :]  # (heads, hw)
        return self._masked(fuse_heads(a, head, axis=0))

    def head_maps(self, query_index: int) -> np.ndarray:
        """Decoder cross-attention of one query for every layer and head: [L_dec, heads, h, w]."""
        return self._masked(self.dec_cross[:, :, self._query(query_index), :])

    def encoder_attention_map(self, layer: int, head: Head, point: Point | None = None,
                              direction: str = "from", *, cell: Cell | None = None) -> np.ndarray:
        """[h, w] float32 encoder self-attention at one location of the feature map.

        point: (x, y) in ORIGINAL-image pixels (the cell holding it is used), or cell=(row, col).
        direction "from": where that cell looks (its row of the attention matrix);
        "to": how much every cell looks at it (its column). NaN on padding cells."""
        idx = self._cell_index(point, cell)
        a = self.enc_attn[self._layer(layer, self.num_encoder_layers)]  # (heads, hw, hw)
        vec = self._direction(a, idx, direction)  # (heads, hw)
        return self._masked(fuse_heads(vec, head, axis=0))

    def encoder_head_maps(self, point: Point | None = None, direction: str = "from", *,
                          cell: Cell | None = None) -> np.ndarray:
        """encoder_attention_map for every encoder layer and head: [L_enc, heads, h, w]."""
        idx = self._cell_index(point, cell)
        return self._masked(self._direction(self.enc_attn, idx, direction))

    def decoder_self_attention(self, layer: int, head: Head, queries: Sequence[int]) -> np.ndarray:
        """[k, k] float32 decoder self-attention among `queries` (e.g. the detected ones):
        entry (i, j) is how much queries[i] attends to queries[j]. Rows are cut out of a softmax
        over all queries, so they need not sum to 1."""
        idx = np.asarray([self._query(q) for q in queries], dtype=int)
        a = self.dec_self[self._layer(layer, self.num_layers)]  # (heads, Q, Q)
        return fuse_heads(a[:, idx[:, None], idx[None, :]], head, axis=0).astype(np.float32)

    def attention_steps(self, layer: int, head: int, query_index: int, kind: str = "cross"):
        """q, k, v, logits, mask, weights, output of one head of decoder `layer`'s cross-attention
        for object query `query_index` (vitviz.core.analysis.steps_detr); needs the model attached."""
        from .steps_detr import detr_attention_steps

        return detr_attention_steps(self, layer, head, query_index, kind)

    # -- checks --------------------------------------------------------------------------------
    @staticmethod
    def _direction(a: np.ndarray, idx: int, direction: str) -> np.ndarray:
        if direction == "from":
            return a[..., idx, :]
        if direction == "to":
            return a[..., :, idx]
        raise ValueError(f"direction must be 'from' or 'to', not {direction!r}")

    def _query(self, q: int) -> int:
        q = int(q)
        if not 0 <= q < self.num_queries:
            raise IndexError(f"query {q} out of range (model has {self.num_queries} queries)")
        return q

    @staticmethod
    def _layer(layer: int, n: int) -> int:
        if not -n <= layer < n:
            raise IndexError(f"layer {layer} out of range (there are {n})")
        return layer
