"""Every head of every layer for one query, as ONE composited image (rows = layers, cols = heads).

One ImageItem repaints in a few ms where 144 view boxes took ~140 ms (measured on a 2-core machine).
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from ...core.figures import normalise_tiles
from ..colormaps import DEFAULT_COLORMAP, map_values
from .clicks import left_click_point
from .tile_plot import highlight_item, tile_plot

GAP = 1  # pixels of background between tiles


def composite(tiles_rgba: np.ndarray, gap: int = GAP, background=(32, 33, 36, 255)) -> np.ndarray:
    """(L, H, r, c, 4) uint8 -> one (L*(r+gap)-gap, H*(c+gap)-gap, 4) image, tile (l, h) at row l, col h."""
    L, H, r, c, _ = tiles_rgba.shape
    out = np.empty((L, r + gap, H, c + gap, 4), np.uint8)
    out[:] = background
    out[:, :r, :, :c] = tiles_rgba.transpose(0, 2, 1, 3, 4)
    return out.reshape(L * (r + gap), H * (c + gap), 4)[: L * (r + gap) - gap, : H * (c + gap) - gap]


class HeadGridView(pg.GraphicsLayoutWidget):
    """Click a tile to select (row index, column index) = (layer/block, head)."""

    tileClicked = QtCore.Signal(int, int)
    grid_shape = (0, 0)  # (class defaults: Qt sends a resize while __init__ builds the plot)
    tile_shape = (1, 1)

    def __init__(self, row_name: str = "layer", col_name: str = "head", parent=None):
        super().__init__(parent)
        self.setBackground("#202124")
        self.row_name, self.col_name = row_name, col_name
        self.plot = tile_plot(self)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.highlight = highlight_item(self.plot)
        self.scene().sigMouseClicked.connect(self._on_click)
        self._labels = (None, None)
        self._shown_ticks: tuple[list[str], list[str]] = ([], [])

    def set_maps(self, maps: np.ndarray, cmap: str = DEFAULT_COLORMAP,
                 row_labels=None, col_labels=None) -> None:
        """maps (rows, cols, r, c) float; each tile normalised on its own."""
        L, H, r, c = maps.shape
        tiles = map_values(cmap, np.nan_to_num(normalise_tiles(maps), nan=0.0), 0.0, 1.0)
        tiles[np.isnan(maps)] = (0, 0, 0, 255)
        self.image.setImage(composite(tiles), levels=(0, 255))
        self.image.setRect(QtCore.QRectF(0, 0, H * (c + GAP) - GAP, L * (r + GAP) - GAP))
        if (L, H, r, c) != (*self.grid_shape, *self.tile_shape):
            self.tile_shape, self.grid_shape = (r, c), (L, H)
            self._set_ticks(row_labels, col_labels)
            self.fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self.grid_shape != (0, 0):
            self._set_ticks(*self._labels)

    def tick_labels(self) -> tuple[list[str], list[str]]:
        """The row and column labels on the axes now (tests, screenshots)."""
        return self._shown_ticks

    def fit(self) -> None:
        """Show every tile. The rect is explicit: auto-range would include the previous grid's
        selection outline, and a 4x4 grid after a 12x12 one would sit small in a corner."""
        self.plot.vb.setRange(self.image.mapRectToParent(self.image.boundingRect()), padding=0.01)

    def _set_ticks(self, row_labels, col_labels) -> None:
        L, H = self.grid_shape
        r, c = self.tile_shape
        row_labels = row_labels or [f"L{i}" for i in range(L)]
        col_labels = col_labels or [f"H{i}" for i in range(H)]
        # labels thin out when tiles are narrower on screen than a label ("H1H2H3" ran together)
        vb = self.plot.vb
        data_w, data_h = H * (c + GAP) - GAP, L * (r + GAP) - GAP
        scale = min(vb.width() / data_w, vb.height() / data_h)  # screen px per data unit (aspect locked)
        px_c, px_r = scale * (c + GAP), scale * (r + GAP)
        fm = QtGui.QFontMetrics(self.plot.getAxis("top").style.get("tickFont") or QtGui.QFont())
        label_w = max(fm.horizontalAdvance(t) for t in col_labels) + 6
        step_c = max(1, math.ceil(label_w / px_c)) if px_c > 0 else max(1, H // 16)
        step_r = max(1, math.ceil((fm.height() + 2) / px_r)) if px_r > 0 else max(1, L // 24)
        rows_shown = [((i * (r + GAP)) + r / 2, row_labels[i]) for i in range(0, L, step_r)]
        cols_shown = [((j * (c + GAP)) + c / 2, col_labels[j]) for j in range(0, H, step_c)]
        self.plot.getAxis("left").setTicks([rows_shown, []])
        self.plot.getAxis("top").setTicks([cols_shown, []])
        self._shown_ticks = ([t for _, t in rows_shown], [t for _, t in cols_shown])
        self._labels = (row_labels, col_labels)
        self.plot.getAxis("left").setLabel(self.row_name)
        self.plot.getAxis("top").setLabel(self.col_name)

    def set_selected(self, row: int | None, col: int | None) -> None:
        """Outline tile (row, col); col None outlines the whole row (fused heads)."""
        if row is None:
            self.highlight.setVisible(False)
            return
        r, c = self.tile_shape
        L, H = self.grid_shape
        if col is None:
            rect = QtCore.QRectF(-0.5, row * (r + GAP) - 0.5, H * (c + GAP), r + 1)
        else:
            rect = QtCore.QRectF(col * (c + GAP) - 0.5, row * (r + GAP) - 0.5, c + 1, r + 1)
        self.highlight.setRect(rect)
        self.highlight.setVisible(True)

    def tile_at(self, x: float, y: float) -> tuple[int, int] | None:
        r, c = self.tile_shape
        L, H = self.grid_shape
        row, col = int(np.floor(y / (r + GAP))), int(np.floor(x / (c + GAP)))
        return (row, col) if 0 <= row < L and 0 <= col < H else None

    def tile_center(self, row: int, col: int) -> QtCore.QPoint:
        """Widget pixel at the centre of a tile (for tests and synthetic clicks)."""
        r, c = self.tile_shape
        p = self.plot.vb.mapViewToScene(QtCore.QPointF(col * (c + GAP) + c / 2, row * (r + GAP) + r / 2))
        return self.mapFromScene(p)

    def _on_click(self, event) -> None:
        if event.double():
            p = self.plot.vb.mapSceneToView(event.scenePos())
            if self.tile_at(p.x(), p.y()) is None:
                self.fit()  # a double-click beside the tiles
            return
        p = left_click_point(self.plot.vb, event)
        if p is None:
            return
        tile = self.tile_at(p.x(), p.y())
        if tile is not None:
            self.tileClicked.emit(*tile)
