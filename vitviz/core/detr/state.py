"""What the DETR views show: threshold, the selected object, the encoder probe, layer, head, direction.

In Python the selected object `query` is an object-query index (int), None (no object) or "auto"
(the best detection above the threshold, or detection `detection` when that is given; none if
nothing scores above it). As JSON it is written "qN", null or "auto", because settings dicts (the
CLI's --query, sidecars) also take:

    N or "N"        DETECTION N: the N-th best above the threshold (0 = the best)
    "qN"            object QUERY N, any of the model's queries, even below the threshold
    [row, col]      probe the ENCODER at that feature cell (-> `cell`; no object is selected)
    "ROW,COL"       the same
    "cls", ""       keep the current selection (the CLI's default)
    "none", null    no object

The encoder probe is `point` (x, y in original pixels; None: the image's centre) and its feature
`cell`; when only the cell is given the point moves to the cell's centre. `layer` counts over
max(decoder, encoder) layers; each stack shows min(layer, its last layer). `focus` says what the
"attention" view and the heads grid show, the object or the point; with no object they show the
point (shown_focus), and the object comes back with the next selection.

A resolved state has `query` an int or None, `detection` its rank among the detections (None
below the threshold), `point` and `cell` both set: sidecars record that, and building the figure
again from it gives the same figure. Sidecars of vitviz 0.1 (the old panel's settings) read as they
are; their derived keys detections / decoder_layer / encoder_layer are recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..figures import ExportError
from ..state import ViewState, check_direction, head_or_fusion

DEFAULT_THRESHOLD = 0.7  # DETR's own demo threshold
FOCUSES = ("query", "point")  # what "attention" and the heads grid show: the object or the point
# What the selected object's map is: its decoder cross-attention at the layer and head, or its
# relevance (Chefer 2021 encoder-decoder rules, every layer: why the model made this box).
OBJECT_MAPS = ("attention", "relevance")


@dataclass(frozen=True)
class DetrState(ViewState):
    threshold: float = DEFAULT_THRESHOLD
    query: object = "auto"  # int (object query) | None | "auto"
    detection: int | None = None  # input with query "auto": that rank; resolved: the query's rank
    point: tuple | None = None  # (x, y) original pixels
    cell: tuple | None = None  # (row, col) of the point's feature cell
    layer: int = -1  # negative counts from the end
    head: object = "mean"  # a head index, or "mean" | "max" | "min"
    direction: str = "from"  # encoder: the point's row (where it looks) or its column ("to")
    focus: str = "query"
    object_map: str = "attention"  # OBJECT_MAPS
    family = "detr"

    def __post_init__(self) -> None:
        q = self.query
        if isinstance(q, str) and q[:1].lower() == "q" and q[1:].isdigit():  # JSON "qN" -> N
            object.__setattr__(self, "query", int(q[1:]))
        elif isinstance(q, np.integer):
            object.__setattr__(self, "query", int(q))

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = super().to_json()
        if isinstance(self.query, int):  # a bare number in a settings dict is a detection rank
            out["query"] = f"q{self.query}"
        return out

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Settings dicts (the CLI's, sidecars) -> fields. Idempotent: `updated` runs it on the
        overrides and again on the merged dict."""
        picked = None  # what the "query" key chose: "object" or "cell"
        if "query" in data:
            q = data.pop("query")
            if isinstance(q, str):
                text = q.strip().lower()
                if text in ("cls", ""):
                    q = "keep"
                elif text in ("auto", "none"):
                    q = None if text == "none" else "auto"
                elif text.startswith("q") and text[1:].isdigit():
                    q = text
                elif text.isdigit():
                    q = int(text)
                elif "," in text:
                    q = text.split(",")
                else:
                    raise ExportError(f"query must be a detection number, qN (a query), ROW,COL (an encoder "
                                      f"cell) or cls, not {q!r}")
            if isinstance(q, (int, np.integer)) and not isinstance(q, bool):
                data.update(query="auto", detection=int(q))
                picked = "object"
            elif q is None or isinstance(q, str):
                if q != "keep":
                    data["query"], picked = q, "object"
            else:
                try:
                    row, col = (int(v) for v in q)
                except (TypeError, ValueError):
                    raise ExportError(f"query must be a detection number, qN, ROW,COL or cls, not {q!r}") from None
                data.update(query=None, cell=(row, col), point=None)
                picked = "cell"
        if "point" in data and "cell" not in data:
            data["cell"] = None  # the point decides its cell
        if data.get("cell") is not None and "point" not in data:
            data["point"] = None  # the cell decides the point
        if "focus" not in data:
            if picked == "object":
                data["focus"] = "query"
            elif picked == "cell" or "point" in data or "cell" in data:
                data["focus"] = "point"
        return data

    # -- checks --------------------------------------------------------------------------------
    def resolved(self, analysis) -> "DetrState":
        a = analysis
        base = super().resolved(a)
        try:
            threshold = float(self.threshold)
        except (TypeError, ValueError):
            raise ExportError(f"threshold must be a number in [0, 1], not {self.threshold!r}") from None
        if not 0.0 <= threshold <= 1.0:
            raise ExportError(f"threshold must be in [0, 1], not {threshold}")
        n = max(a.num_layers, a.num_encoder_layers)
        try:
            layer = int(self.layer)
        except (TypeError, ValueError):
            raise ExportError(f"layer must be a number, not {self.layer!r}") from None
        layer = layer + n if layer < 0 else layer
        if not 0 <= layer < n:
            raise ExportError(f"layer {self.layer} is out of range (the model has {a.num_layers} decoder and "
                              f"{a.num_encoder_layers} encoder layers: 0..{n - 1})")
        head = head_or_fusion(self.head, a.num_heads)
        direction = check_direction(self.direction)
        if self.focus not in FOCUSES:
            raise ExportError(f"focus must be 'query' or 'point', not {self.focus!r}")
        if self.object_map not in OBJECT_MAPS:
            raise ExportError(f"object_map must be one of {', '.join(OBJECT_MAPS)}, not {self.object_map!r}")
        queries = [d.query for d in a.detections(threshold)]
        query = self._object(a, queries)
        return base.replace(threshold=threshold, query=query,
                            detection=queries.index(query) if query in queries else None,
                            **self._probe(a), layer=layer, head=head, direction=direction, model_view=False)

    def _object(self, a, queries: list[int]) -> int | None:
        q = self.query
        if q == "auto":
            if self.detection is None:
                return queries[0] if queries else None
            try:
                k = int(self.detection)
            except (TypeError, ValueError):
                raise ExportError(f"detection must be a number, not {self.detection!r}") from None
            if not 0 <= k < len(queries):
                have = f"detections 0..{len(queries) - 1}" if queries else "none"
                raise ExportError(f"detection {k}: {len(queries)} object(s) score above the threshold ({have}); "
                                  "lower the threshold, or name a query as qN")
            return queries[k]
        if q is None:
            return None
        if not isinstance(q, int) or isinstance(q, bool):
            raise ExportError(f"query must be an object query (qN), none or auto, not {q!r}")
        if not 0 <= q < a.num_queries:
            raise ExportError(f"query q{q}: the model has {a.num_queries} object queries (q0..q{a.num_queries - 1})")
        return q

    def _probe(self, a) -> dict:
        """point and cell, checked; a cell alone puts the point at its centre (inside the image)."""
        w, h = a.image.size
        if self.cell is not None and self.point is None:
            try:
                row, col = (int(v) for v in self.cell)
            except (TypeError, ValueError):
                raise ExportError(f"cell must be [row, col], not {self.cell!r}") from None
            rows, cols = a.feature_shape
            if not (0 <= row < rows and 0 <= col < cols):
                raise ExportError(f"cell ({row}, {col}) is outside the {rows}x{cols} feature map")
            if a.pad_mask[row, col]:
                raise ExportError(f"cell ({row}, {col}) is padding: it has no attention to show")
            x, y = a.cell_center(row, col)
            # edge cells overhang the image: keep the point on it
            return {"point": (min(max(x, 0.0), w - 0.5), min(max(y, 0.0), h - 0.5)), "cell": (row, col)}
        if self.point is None:
            point = (w / 2, h / 2)
        else:
            try:
                point = tuple(float(v) for v in self.point)
            except (TypeError, ValueError):
                point = ()
            if len(point) != 2:
                raise ExportError(f"point must be [x, y] in image pixels, not {self.point!r}")
        cell = a.cell_at(*point)
        if cell is None:
            raise ExportError(f"point ({point[0]:.1f}, {point[1]:.1f}) is not on the image ({w} x {h} pixels)")
        return {"point": point, "cell": tuple(int(v) for v in cell)}

    # -- what a resolved state shows -------------------------------------------------------------
    def shown_focus(self) -> str:
        """What "attention" and the grid show: the point when no object is selected."""
        return "point" if self.focus == "query" and self.query is None else self.focus

    def decoder_layer(self, analysis) -> int:
        return min(int(self.layer) % max(analysis.num_layers, analysis.num_encoder_layers),
                   analysis.num_layers - 1)

    def encoder_layer(self, analysis) -> int:
        return min(int(self.layer) % max(analysis.num_layers, analysis.num_encoder_layers),
                   analysis.num_encoder_layers - 1)

    # -- what survives -----------------------------------------------------------------------------
    def at_threshold(self, threshold: float, analysis) -> "DetrState":
        """A new threshold: the object stays selected while it is detected, else the best one."""
        queries = [d.query for d in analysis.detections(float(threshold))]
        keep = isinstance(self.query, int) and self.query in queries
        return self.replace(threshold=float(threshold), query=self.query if keep else "auto", detection=None)

    def carried_over(self, analysis) -> "DetrState":
        """A new image or model: layer clamped to its last, a head it lacks -> mean, the point kept
        when it is on the new image (else the centre), the object kept when it is still detected
        (else the best detection); threshold, direction and focus kept."""
        a = analysis
        n = max(a.num_layers, a.num_encoder_layers)
        layer = self.layer
        if isinstance(layer, int) and not -n <= layer < n:
            layer = n - 1
        head = self.head if not isinstance(self.head, int) or 0 <= self.head < a.num_heads else "mean"
        point = self.point
        if point is not None and a.cell_at(*point) is None:
            point = None
        return self.replace(layer=layer, head=head, point=point, cell=None).at_threshold(self.threshold, a)
