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


# the DETR paper's colours (Fig. 7): green small boxes, red large horizontal, blue large vertical
SIZE_COLOURS = {"small": (60, 200, 80), "horizontal": (235, 60, 50), "vertical": (60, 120, 255)}
TILE_GAP = 0.15  # between the slots' unit squares, in units of the square


def from_analysis(analysis, threshold: float = 0.7, source: str = "the image on screen") -> QuerySpecialisation:
    """The specialisation of one analysed image (each slot's one box)."""
    return QuerySpecialisation(query_boxes(analysis)[None], [source], threshold)


def grid_columns(num_queries: int) -> int:
    """Slots per row of the tile grid: about square (100 queries: 10 x 10)."""
    return max(1, int(np.ceil(np.sqrt(num_queries))))


def tile_origin(query: int, columns: int, gap: float = TILE_GAP) -> tuple[float, float]:
    """Top-left corner (x, y) of slot `query`'s unit square in the grid (row-major, y downward)."""
    r, c = divmod(query, columns)
    return c * (1 + gap), r * (1 + gap)


def tile_at(x: float, y: float, num_queries: int, columns: int, gap: float = TILE_GAP) -> int | None:
    """The slot whose unit square holds grid point (x, y), or None (a gap, or outside)."""
    if x < 0 or y < 0:
        return None
    c, fx = divmod(x, 1 + gap)
    r, fy = divmod(y, 1 + gap)
    q = int(r) * columns + int(c)
    if fx > 1 or fy > 1 or c >= columns or q >= num_queries:
        return None
    return q


def scatter_points(spec: QuerySpecialisation, columns: int | None = None, gap: float = TILE_GAP) -> dict:
    """Every box of every image as a point in its slot's unit square: {"x", "y" (grid coordinates,
    y downward like the image), "query", "image" (int arrays), "size" (size class per point)}."""
    columns = columns or grid_columns(spec.num_queries)
    n_img, n_q = spec.boxes.shape[:2]
    q = np.tile(np.arange(n_q), n_img)
    img = np.repeat(np.arange(n_img), n_q)
    b = spec.boxes.reshape(-1, spec.boxes.shape[-1])
    ox = (q % columns) * (1 + gap)
    oy = (q // columns) * (1 + gap)
    return {"x": ox + np.clip(b[:, 0], 0, 1), "y": oy + np.clip(b[:, 1], 0, 1), "query": q, "image": img,
            "size": size_class(b)}


def summary(spec: QuerySpecialisation, query: int) -> str:
    """One line about slot `query`: its boxes by size class and how often it fired."""
    c = {k: int(v[query]) for k, v in spec.counts().items()}
    fired = len(spec.fired(query))
    return (f"slot {query}: {c['small']} small, {c['horizontal']} large horizontal, {c['vertical']} large "
            f"vertical box(es) over {spec.boxes.shape[0]} image(s); fired (score > {spec.threshold:g}) "
            f"on {fired}")
