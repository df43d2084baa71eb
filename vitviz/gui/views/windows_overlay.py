"""Swin window geometry drawn over an ImageView: window partitions (regular / shifted), the nine
regions the shifted-window mask keeps apart, and the pieces of one highlighted window.

The geometry itself (segments, region rectangles, window pieces in original-image pixels) and its
colours come from vitviz.core.swin.marks, which the exported figures draw too. Lines are cosmetic
(constant screen width) with a dark halo, so they read on any image and on a projector.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...core.swin.marks import REGION_COLORS, WINDOW_COLOR, Rect

HALO_COLOR = (0, 0, 0, 200)
# Each mask region's hatch differs from the regions it shares windows with (1|2, 3|6, 4|5|7|8) so
# they differ without relying on colour; no horizontal/vertical hatches, which read as grid lines.
_B, _F = QtCore.Qt.BrushStyle.BDiagPattern, QtCore.Qt.BrushStyle.FDiagPattern
REGION_PATTERNS = (QtCore.Qt.BrushStyle.NoBrush, _B, _F, _B, QtCore.Qt.BrushStyle.DiagCrossPattern, _B, _F, _F,
                   QtCore.Qt.BrushStyle.Dense6Pattern)

Z_REGIONS, Z_PARTITION, Z_WINDOW = 12, 22, 25  # heatmap 10, crop shade 15, grid 20, selection 30


# -- drawing -----------------------------------------------------------------------------------
def _pen(color, width: float, style=QtCore.Qt.PenStyle.SolidLine) -> QtGui.QPen:
    pen = pg.mkPen(color, width=width, style=style)
    pen.setCosmetic(True)
    return pen


def _segments_xy(segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(segs) == 0:
        return np.zeros(0), np.zeros(0)
    return segs[:, [0, 2]].reshape(-1), segs[:, [1, 3]].reshape(-1)


@dataclass
class _Lines:
    halo: pg.PlotCurveItem
    line: pg.PlotCurveItem

    def set(self, segs: np.ndarray | None, color=None, dashed: bool = False, width: float = 2.5) -> None:
        if segs is None or len(segs) == 0:
            self.halo.setData([], [])
            self.line.setData([], [])
            return
        x, y = _segments_xy(segs)
        style = QtCore.Qt.PenStyle.DashLine if dashed else QtCore.Qt.PenStyle.SolidLine
        self.halo.setPen(_pen(HALO_COLOR, width + 2.5, style))
        self.line.setPen(_pen(color, width, style))
        self.halo.setData(x, y)
        self.line.setData(x, y)


class WindowsOverlay:
    """The Swin window items of one ImageView's ViewBox. Set data with `set_partitions`,
    `set_regions`, `set_window`; each call replaces what it drew before."""

    def __init__(self, vb: pg.ViewBox):
        self.vb = vb
        self.partitions: list[_Lines] = []
        for z in (0.0, 0.5):  # a primary and a comparison partition ("both")
            lines = _Lines(pg.PlotCurveItem(connect="pairs"), pg.PlotCurveItem(connect="pairs"))
            lines.halo.setZValue(Z_PARTITION + z)
            lines.line.setZValue(Z_PARTITION + z + 0.1)
            vb.addItem(lines.halo)
            vb.addItem(lines.line)
            self.partitions.append(lines)
        self.region_items: list[QtWidgets.QGraphicsItem] = []
        self.region_labels: list[pg.TextItem] = []
        self.window_items: list[QtWidgets.QGraphicsRectItem] = []
        self.window_pieces: list[Rect] = []  # what is outlined now (tests, exports)
        self.regions: list[tuple[int, Rect]] = []

    def set_partitions(self, *partitions) -> None:
        """Each partition: (segments, color) or (segments, color, dashed). Up to two, later on top."""
        parts = [p for p in partitions if p is not None][: len(self.partitions)]
        for lines, p in zip(self.partitions, parts + [None] * (len(self.partitions) - len(parts))):
            lines.set(*p) if p is not None else lines.set(None)

    def set_regions(self, regions: list[tuple[int, Rect]], labels: bool = True) -> None:
        """Hatched rectangles per mask region (label 0, the bulk, left clear), each with its number."""
        for item in self.region_items + self.region_labels:
            self.vb.removeItem(item)
        self.region_items, self.region_labels, self.regions = [], [], list(regions)
        for lab, (x0, y0, x1, y1) in regions:
            color = QtGui.QColor(REGION_COLORS[lab % len(REGION_COLORS)])
            rect = QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)
            items = []
            if lab:  # hatch only: the heatmap under it stays readable
                hatch = QtWidgets.QGraphicsRectItem(rect)
                line = QtGui.QColor(color)
                line.setAlpha(150)
                hatch.setBrush(QtGui.QBrush(line, REGION_PATTERNS[lab % len(REGION_PATTERNS)]))
                edge = QtGui.QColor(color)
                edge.setAlpha(220)
                hatch.setPen(_pen(edge, 1.5, QtCore.Qt.PenStyle.DashLine))
                items = [hatch]
            for it in items:
                it.setZValue(Z_REGIONS)
                self.vb.addItem(it)
            self.region_items += items
            if labels:
                # region 0 is the bulk, where the token's window and its heatmap usually are:
                # its number goes in its top-left corner, the border strips' in their centres
                box = QtGui.QColor(color)
                box.setAlpha(230)
                text = pg.TextItem(html=f"<b>{lab}</b>", anchor=(0, 0) if lab == 0 else (0.5, 0.5),
                                   fill=pg.mkBrush(box), border=pg.mkPen(0, 0, 0, 200))
                text.setColor("k")
                text.setPos(*((x0, y0) if lab == 0 else ((x0 + x1) / 2, (y0 + y1) / 2)))
                text.setZValue(Z_REGIONS + 0.5)
                self.vb.addItem(text)
                self.region_labels.append(text)

    def set_window(self, pieces: list[Rect]) -> None:
        """Outline every piece of one window (a shifted window that wraps has up to four)."""
        while len(self.window_items) < 2 * len(pieces):
            for width, color, z in ((7.0, HALO_COLOR, Z_WINDOW), (3.5, WINDOW_COLOR, Z_WINDOW + 0.1)):
                item = QtWidgets.QGraphicsRectItem()
                item.setPen(_pen(color, width))
                item.setZValue(z)
                self.vb.addItem(item)
                self.window_items.append(item)
        for k, item in enumerate(self.window_items):
            if k // 2 < len(pieces):
                x0, y0, x1, y1 = pieces[k // 2]
                item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
                item.setVisible(True)
            else:
                item.setVisible(False)
        self.window_pieces = list(pieces)

    def clear(self) -> None:
        self.set_partitions()
        self.set_regions([])
        self.set_window([])
