"""The plot every tile view starts from (heads grid, bias tables, detection matrices): rows downward,
square pixels, no menu or buttons, and a red outline for the selected tile."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets


def tile_plot(layout: pg.GraphicsLayoutWidget, row: int = 0, col: int = 0, top_axis: bool = True) -> pg.PlotItem:
    """A PlotItem in `layout` at (row, col) for image tiles; `top_axis` False hides every axis."""
    plot: pg.PlotItem = layout.addPlot(row=row, col=col)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.invertY(True)
    plot.setAspectLocked(True)
    plot.hideAxis("bottom")
    if top_axis:
        plot.showAxis("top")
    else:
        plot.hideAxis("left")
    return plot


def outline_item(width: float = 2.0, z: float = 10) -> QtWidgets.QGraphicsRectItem:
    """The red cosmetic outline of a selection (set its rect to the selected tile or patch)."""
    item = QtWidgets.QGraphicsRectItem()
    pen = QtGui.QPen(QtGui.QColor("#ff3b30"), width)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setZValue(z)
    return item


def highlight_item(plot: pg.PlotItem, width: float = 2.0) -> QtWidgets.QGraphicsRectItem:
    """An outline_item added over the tiles of `plot`."""
    item = outline_item(width)
    plot.addItem(item)
    return item
