"""Relative position bias of one Swin block: every head's (2M-1) x (2M-1) table side by side, on
one shared colour scale (the bias is added to the logits, so heads are comparable as they are).

Tile pixel [dy + M - 1, dx + M - 1] is the bias for a key at offset (dy, dx) = query - key; the
centre (marked +) is the query's own position. Click a tile to select that head.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from ..colormaps import DEFAULT_COLORMAP, colormap, map_values
from .head_grid import composite
from .tile_plot import highlight_item, tile_plot

GAP = 1
MAX_COLS = 8


def tile_layout(heads: int, max_cols: int = MAX_COLS) -> tuple[int, int]:
    """(rows, cols) of the head tiles: at most `max_cols` across, rows as even as possible."""
    rows = max(1, math.ceil(heads / max_cols))
    return rows, max(1, math.ceil(heads / rows))


class BiasView(pg.GraphicsLayoutWidget):
    tileClicked = QtCore.Signal(int)  # head
    hoveredValue = QtCore.Signal(str)  # a readout for the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("#202124")
        self.title = self.addLabel("Relative position bias", row=0, col=0, colspan=2, color="#e8eaed")
        self.plot = tile_plot(self, row=1, col=0, top_axis=False)
        self.plot.setMouseEnabled(False, False)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.centres = pg.ScatterPlotItem(symbol="+", size=9, pen=pg.mkPen("w", width=1.5), brush=None)
        self.centres.setZValue(5)
        self.plot.addItem(self.centres)
        self.highlight = highlight_item(self.plot, 3)
        self.labels: list[pg.TextItem] = []
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(DEFAULT_COLORMAP), width=12,
                                        interactive=False, colorMapMenu=False)
        self.colorbar.axis.setWidth(None)  # ColorBarItem fixes 45 px, too narrow for "-0.0125"
        self.addItem(self.colorbar, row=1, col=1)
        self.bias: np.ndarray | None = None
        self.layout_shape = (0, 0)
        self.tile = (1, 1)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.scene().sigMouseMoved.connect(self._on_move)

    def set_bias(self, bias: np.ndarray, cmap: str = DEFAULT_COLORMAP, title: str = "") -> None:
        """bias (heads, 2Mh-1, 2Mw-1), drawn on one scale over all heads."""
        heads, th, tw = bias.shape
        rows, cols = tile_layout(heads)
        lo, hi = float(np.min(bias)), float(np.max(bias))
        hi = hi if hi > lo else lo + 1e-6
        rgba = np.zeros((rows * cols, th, tw, 4), np.uint8)
        rgba[:heads] = map_values(cmap, bias, lo, hi)
        rgba[heads:] = (32, 33, 36, 255)
        self.image.setImage(composite(rgba.reshape(rows, cols, th, tw, 4), GAP), levels=(0, 255))
        self.image.setRect(QtCore.QRectF(0, 0, cols * (tw + GAP) - GAP, rows * (th + GAP) - GAP))
        self.colorbar.setColorMap(colormap(cmap))
        self.colorbar.setLevels((lo, hi))
        self.levels = (lo, hi)
        self.bias = bias
        reshaped = (rows, cols, th, tw) != (*self.layout_shape, *self.tile) or len(self.labels) != heads
        self.layout_shape, self.tile = (rows, cols), (th, tw)
        origins = np.array([self._origin(h) for h in range(heads)], dtype=np.float64)
        self.centres.setData(origins[:, 0] + tw / 2, origins[:, 1] + th / 2)
        if reshaped:
            for t in self.labels:
                self.plot.removeItem(t)
            self.labels = []
            for h in range(heads):
                t = pg.TextItem(f"H{h}", color="#e8eaed", anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 140))
                t.setPos(*self._origin(h))
                t.setZValue(6)
                self.plot.addItem(t)
                self.labels.append(t)
        self.plot.vb.enableAutoRange()  # keeps fitting the tiles as the splitter resizes the view
        if title:
            self.title.setText(title)

    def _origin(self, head: int) -> tuple[float, float]:
        th, tw = self.tile
        cols = self.layout_shape[1]
        return (head % cols) * (tw + GAP), (head // cols) * (th + GAP)

    def set_selected(self, head: int | None) -> None:
        """Outline one head's tile; None (fused heads) outlines nothing."""
        if head is None or self.bias is None or not 0 <= head < len(self.bias):
            self.highlight.setVisible(False)
            return
        x, y = self._origin(head)
        th, tw = self.tile
        self.highlight.setRect(QtCore.QRectF(x - 0.5, y - 0.5, tw + 1, th + 1))
        self.highlight.setVisible(True)

    def selected_rect(self) -> QtCore.QRectF | None:
        return self.highlight.rect() if self.highlight.isVisible() else None

    def cell_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        """(head, dy index, dx index) under plot coordinates (x, y)."""
        if self.bias is None:
            return None
        th, tw = self.tile
        rows, cols = self.layout_shape
        col, row = int(np.floor(x / (tw + GAP))), int(np.floor(y / (th + GAP)))
        head = row * cols + col
        i, j = int(np.floor(y - row * (th + GAP))), int(np.floor(x - col * (tw + GAP)))
        if 0 <= col < cols and 0 <= row < rows and head < len(self.bias) and 0 <= i < th and 0 <= j < tw:
            return head, i, j
        return None

    def tile_center(self, head: int) -> QtCore.QPoint:
        """Widget pixel at the centre of a head's tile (tests, synthetic clicks)."""
        x, y = self._origin(head)
        th, tw = self.tile
        return self.mapFromScene(self.plot.vb.mapViewToScene(QtCore.QPointF(x + tw / 2, y + th / 2)))

    def _on_click(self, event) -> None:
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        p = self.plot.vb.mapSceneToView(event.scenePos())
        cell = self.cell_at(p.x(), p.y())
        if cell is not None:
            self.tileClicked.emit(cell[0])

    def _on_move(self, pos) -> None:
        p = self.plot.vb.mapSceneToView(pos)
        cell = self.cell_at(p.x(), p.y())
        if cell is None:
            return
        h, i, j = cell
        th, tw = self.tile
        dy, dx = i - (th - 1) // 2, j - (tw - 1) // 2
        self.hoveredValue.emit(f"head {h} · key at offset (dy {dy:+d}, dx {dx:+d}) from the query · "
                               f"bias {self.bias[h, i, j]:.4g}")
