"""DETR query specialisation (the DETR paper's Fig. 7): over many images, where each object-query
slot puts its box.

Per image, every slot's final prediction: box centre (cx, cy) and size (w, h) normalised by the
image (DETR's own output), its best real-class probability (no-object in the softmax, dropped) and
that class. Over a folder the slots' centres are scattered in the unit square, coloured by box size;
a slot "fired" on an image when its score beats the detection threshold.
Size classes (the paper's colours, thresholds chosen here): "small" when w*h < LARGE_AREA of the
image, else "horizontal" (w >= h) or "vertical".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELDS = ("cx", "cy", "w", "h", "score", "label")
LARGE_AREA = 0.1  # share of the image above which a box counts as large


def query_boxes(analysis) -> np.ndarray:
    """(queries, 6) float64: cx, cy, w, h (normalised), best real-class score, its class id."""
    probs = analysis.probabilities()[:, :-1]
    return np.column_stack([np.asarray(analysis.boxes, np.float64), probs.max(-1), probs.argmax(-1)])


def size_class(boxes: np.ndarray) -> np.ndarray:
    """(..., >= 4) boxes -> (...) str: 'small', 'horizontal' or 'vertical'."""
    w, h = boxes[..., 2], boxes[..., 3]
    return np.where(w * h < LARGE_AREA, "small", np.where(w >= h, "horizontal", "vertical"))


@dataclass
class QuerySpecialisation:
    boxes: np.ndarray  # (images, queries, 6) as query_boxes
    sources: list[str]
    threshold: float

    @property
    def num_queries(self) -> int:
        return self.boxes.shape[1]

    def centres(self, query: int) -> np.ndarray:
        """(images, 2) the slot's box centres, normalised."""
        return self.boxes[:, query, :2]

    def fired(self, query: int) -> list[str]:
        """The images where slot `query`'s score beats the threshold."""
        return [s for s, v in zip(self.sources, self.boxes[:, query, 4]) if v > self.threshold]

    def counts(self) -> dict[str, np.ndarray]:
        """Per slot, how many of its boxes fall in each size class."""
        cls = size_class(self.boxes)
        return {k: (cls == k).sum(0) for k in ("small", "horizontal", "vertical")}


def specialisation(folder, threshold: float = 0.7) -> QuerySpecialisation:
    """From measure_many(..., ["query_boxes"]): every image's slots side by side."""
    return QuerySpecialisation(np.asarray(folder.per_image["query_boxes"]), list(folder.sources), threshold)
