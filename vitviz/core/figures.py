"""A figure described without Qt: map views, tile grids and vector marks in original-image pixels.

Each family builds these from (analysis, view state) in core (vitviz.core.families); the GUI views and
the PNG/SVG/PDF exporters (vitviz.gui.export*) both draw them. Plain numpy and dataclasses.

ExportSources.views maps a view name ("attention", "rollout", "grid", "windows", "detections",
"head:3", ...) to a MapView (the image, a heatmap and vector Shapes, all in original-image pixels)
or a TileGrid (rows x cols of small maps). ExportSources.settings holds the resolved, JSON-able view
state: sidecars record it, and building the figure again from it gives the same figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

Color = tuple  # (r, g, b, a) 0-255

GRID_COLOR: Color = (255, 255, 255, 90)  # as the image views draw them
SELECTION_COLOR: Color = (255, 59, 48, 255)
SHADE_COLOR: Color = (0, 0, 0, 150)


class ExportError(Exception):
    """An export failed; the message names the file and the reason."""


# -- what a panel supplies -----------------------------------------------------------------------
@dataclass
class Shape:
    """A vector mark over a MapView, in original-image pixels.

    kind "lines": coords (n, 4) segments x0, y0, x1, y1. kind "rect": coords (x0, y0, x1, y1),
    outlined with `color` (and filled with `fill` if given), `label` written at its top-left corner.
    kind "shade": coords = the rectangle the model saw; everything else in the image is darkened."""

    kind: str
    coords: object
    color: Color = (255, 255, 255, 255)
    width: float = 1.0  # in figure units (1/96 inch), whatever the zoom
    label: str = ""
    fill: Color | None = None
    dashed: bool = False


def grid_lines(xs: np.ndarray, ys: np.ndarray, color: Color = GRID_COLOR, width: float = 1.0) -> Shape:
    """Token grid lines at x edges `xs` and y edges `ys` (TokenGrid.edges())."""
    v = [(x, ys[0], x, ys[-1]) for x in xs]
    h = [(xs[0], y, xs[-1], y) for y in ys]
    return Shape("lines", np.asarray(v + h, dtype=np.float64), color, width)


def selection_rect(rect, color: Color = SELECTION_COLOR, width: float = 2.0) -> Shape:
    return Shape("rect", tuple(float(v) for v in rect), color, width)


def crop_shade(visible_rect, color: Color = SHADE_COLOR) -> Shape:
    return Shape("shade", tuple(float(v) for v in visible_rect), color, 0.0, fill=color)


@dataclass
class MapView:
    """One image view: the original image, a [rows, cols] map drawn over `extent`, vector marks."""

    title: str  # short, above the panel
    description: str  # for the caption, e.g. "attention from the CLS token, layer 11, head 3"
    image: np.ndarray | None  # (H, W, 3) uint8
    values: np.ndarray | None = None  # (rows, cols) float; NaN is transparent
    extent: tuple | None = None  # (x0, y0, x1, y1) where `values` is drawn
    opacity: float = 0.6
    overlay: str = "blend"  # vitviz.core.colormaps.OVERLAYS
    shapes: list[Shape] = field(default_factory=list)
    levels: tuple | None = None  # colour scale; None: min..max of `values`
    value_label: str = "attention"
    view_rect: tuple | None = None  # the region the screen shows (zoom), for "as zoomed" exports
    meta: dict = field(default_factory=dict)  # method and parameters, for the sidecar
    image_rect: tuple | None = None  # where `image` is drawn; None: (0, 0, W, H)

    def placed_image_rect(self) -> tuple | None:
        if self.image is None:
            return None
        if self.image_rect is not None:
            return tuple(float(v) for v in self.image_rect)
        h, w = self.image.shape[:2]
        return 0.0, 0.0, float(w), float(h)

    def full_rect(self) -> tuple:
        """Image and map extent together: what a full export shows."""
        rects = []
        if self.image is not None:
            rects.append(self.placed_image_rect())
        if self.extent is not None:
            rects.append(tuple(float(v) for v in self.extent))
        if not rects:
            return (0.0, 0.0, 1.0, 1.0)
        r = np.array(rects)
        return float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max())


@dataclass
class TileGrid:
    """Small maps in a rows x cols grid (ViT: layers x heads for one query)."""

    title: str
    description: str
    maps: np.ndarray  # (rows, cols, r, c) float
    row_name: str = "layer"
    col_name: str = "head"
    row_labels: list[str] | None = None  # default "L0", "L1", ... / "H0", ...
    col_labels: list[str] | None = None
    selected: tuple | None = None  # (row, col) outlined; col None outlines the whole row
    tile_aspect: float | None = None  # tile width / height as the image shows it; None: c / r
    value_label: str = "attention"
    meta: dict = field(default_factory=dict)


Source = Union[MapView, TileGrid]


@dataclass
class ExportSources:
    """What a panel can export right now, for one set of view settings."""

    views: dict  # name -> MapView | TileGrid, in the order a dialog should list them
    settings: dict  # the resolved view settings (JSON-able), recorded in sidecars
    colormap: str = "viridis"
    current: str = ""  # the view the user is looking at (Ctrl+C copies it)




def normalise_tiles(maps: np.ndarray) -> np.ndarray:
    """(L, H, r, c) -> each tile scaled to [0, 1] by its own min and max (heads differ by orders of
    magnitude; a shared scale would show a few bright tiles and 140 black ones). NaN stays NaN."""
    lo = np.nanmin(maps, axis=(2, 3), keepdims=True)
    hi = np.nanmax(maps, axis=(2, 3), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (maps - lo) / span


def parse_head(value, heads: int, where: str = "the model") -> int | str:
    """An export's head setting -> a head index or a fusion name; ExportError says what is wrong."""
    from .analysis.heads import FUSIONS

    head = int(value) if isinstance(value, (int, np.integer)) or str(value).isdigit() else str(value)
    if isinstance(head, int) and not 0 <= head < heads:
        raise ExportError(f"head {head} is out of range ({where} has {heads} heads: 0..{heads - 1})")
    if isinstance(head, str) and head not in FUSIONS:
        raise ExportError(f"head must be a number or one of {', '.join(FUSIONS)}, not {head!r}")
    return head
