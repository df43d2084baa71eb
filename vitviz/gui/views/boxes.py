"""Detection boxes as vector items over an ImageView, and the small query x query matrix view.

A detection's colour comes from its rank (highest score first; vitviz.core.detr.marks.PALETTE), so
a box keeps its colour when the threshold changes, and the list, the boxes, the matrix markers and
the exports agree. Box labels are placed so they do not cover each other (marks.place_labels, as
the exports do), again at every zoom.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...core.detr.marks import box_hex, label_order, place_labels
from ...core.detr.marks import score_text  # noqa: F401 (the views' and tests' name for it)
from ..colormaps import DEFAULT_COLORMAP, map_values
from .clicks import left_click_point
from .image_view import ImageView
from .tile_plot import highlight_item, tile_plot

def box_color(rank: int) -> QtGui.QColor:
    return QtGui.QColor(box_hex(rank))


def text_color(fill: QtGui.QColor) -> QtGui.QColor:
    """Black on light fills, white on dark ones."""
    lum = 0.299 * fill.red() + 0.587 * fill.green() + 0.114 * fill.blue()
    return QtGui.QColor("#000000" if lum > 140 else "#ffffff")


def color_icon(color: QtGui.QColor, size: int = 12) -> QtGui.QIcon:
    pm = QtGui.QPixmap(size, size)
    pm.fill(color)
    painter = QtGui.QPainter(pm)  # a grey rim, so a white swatch shows on a white list
    painter.setPen(QtGui.QColor("#808080"))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return QtGui.QIcon(pm)


class DetectionList(QtWidgets.QListWidget):
    """Detections best first, each with its colour; rows are ranks (= colour order)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setToolTip("Detections, best first: select one to see its attention")
        self.setMinimumHeight(110)

    def set_detections(self, detections, current_query: int | None) -> None:
        """detections: vitviz.core.analysis.detr.Detection list; no signal is emitted."""
        with QtCore.QSignalBlocker(self):
            self.clear()
            for i, d in enumerate(detections):
                item = QtWidgets.QListWidgetItem(color_icon(box_color(i)),
                                                 f"{d.name}  {score_text(d.score)}  · query {d.query}")
                item.setData(QtCore.Qt.ItemDataRole.UserRole, d.query)
                self.addItem(item)
            queries = [d.query for d in detections]
            self.setCurrentRow(queries.index(current_query) if current_query in queries else -1)

    def set_current(self, rank: int | None) -> None:
        with QtCore.QSignalBlocker(self):
            self.setCurrentRow(-1 if rank is None else rank)


class DetectionImageView(ImageView):
    """An ImageView that also reports Shift and the scene position of a click, so a click on a box
    label can be told from a click on the image."""

    clickedAt = QtCore.Signal(float, float, bool, QtCore.QPointF)  # x, y (original px), shift, scene

    def _on_scene_click(self, event) -> None:
        p = left_click_point(self.vb, event, ignore_double=True)
        if p is None:
            return
        self.setFocus()
        shift = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        self.clickedAt.emit(p.x(), p.y(), shift, QtCore.QPointF(event.scenePos()))


class BoxOverlay:
    """Rectangles with "label score" tags in a ViewBox; one set per call of set_boxes. The tags are
    laid out again when the zoom or the selection changes: the selected one chooses its place
    first, then the best; each takes the first free spot on its box (above, inside, below, stacked)."""

    Z = 40

    def __init__(self, vb: pg.ViewBox) -> None:
        self.vb = vb
        self.rects: dict[int, QtWidgets.QGraphicsRectItem] = {}
        self.labels: dict[int, pg.TextItem] = {}
        self.boxes: dict[int, tuple[float, float, float, float]] = {}
        self.colors: dict[int, QtGui.QColor] = {}
        self.selected: int | None = None
        vb.sigRangeChanged.connect(self.layout_labels)
        vb.sigResized.connect(self.layout_labels)

    def clear(self) -> None:
        for item in [*self.rects.values(), *self.labels.values()]:
            self.vb.removeItem(item)
        self.rects.clear()
        self.labels.clear()
        self.boxes.clear()
        self.colors.clear()

    def set_boxes(self, boxes: list[tuple[int, tuple[float, float, float, float], str, QtGui.QColor]]
                  ) -> None:
        """boxes: (query, (x0, y0, x1, y1) original px, label text, colour), best first."""
        self.clear()
        for n, (query, box, text, color) in enumerate(boxes):
            x0, y0, x1, y1 = box
            rect = QtWidgets.QGraphicsRectItem(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
            rect.setZValue(self.Z + (len(boxes) - n) * 0.001)  # best box on top
            label = pg.TextItem(text, color=text_color(color), fill=pg.mkBrush(color), anchor=(0, 0))
            label.setPos(x0, y0)
            label.setZValue(self.Z + 1 + (len(boxes) - n) * 0.001)
            self.vb.addItem(rect)
            self.vb.addItem(label)
            self.rects[query], self.labels[query] = rect, label
            self.boxes[query], self.colors[query] = box, color
        self.set_selected(self.selected)

    def layout_labels(self, *_) -> None:
        """Place the tags (marks.place_labels) for the zoom on screen: their size is fixed in screen
        pixels, so in image pixels it changes with the zoom."""
        if not self.labels:
            return
        try:
            dx, dy = (abs(v) for v in self.vb.viewPixelSize())
        except Exception:  # a view not laid out yet has no pixel size
            return
        if not (dx > 0 and dy > 0):
            return
        queries = list(self.labels)
        ranks = label_order(len(queries), queries.index(self.selected) if self.selected in queries else None)
        order = [queries[i] for i in ranks]
        sizes = []
        for q in order:
            br = self.labels[q].boundingRect()
            sizes.append((br.width() * dx, br.height() * dy))
        vr = self.vb.viewRect()
        spots = place_labels([self.boxes[q] for q in order], sizes,
                             (vr.left(), vr.top(), vr.right(), vr.bottom()), tol=2 * max(dx, dy))
        for q, (x, y) in zip(order, spots):
            self.labels[q].setPos(x, y)

    def set_selected(self, query: int | None) -> None:
        """Thick outline for the selected box, thin for the others; its tag placed first."""
        self.selected = query
        for q, rect in self.rects.items():
            pen = QtGui.QPen(self.colors[q], 3.5 if q == query else 1.5)
            if query is not None and q != query:
                pen.setStyle(QtCore.Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            rect.setPen(pen)
            self.labels[q].setOpacity(1.0 if query is None or q == query else 0.8)
            if q == query:  # raise the selected one above its neighbours
                rect.setZValue(self.Z + 0.5)
                self.labels[q].setZValue(self.Z + 1.5)
        self.layout_labels()

    def label_at(self, scene_pos: QtCore.QPointF) -> int | None:
        """The query whose label tag is under `scene_pos` (topmost first)."""
        hits = [q for q, item in self.labels.items()
                if item.isVisible() and item.sceneBoundingRect().contains(scene_pos)]
        return max(hits, key=lambda q: self.labels[q].zValue()) if hits else None

    def box_at(self, x: float, y: float) -> int | None:
        """The smallest box containing original pixel (x, y): the most specific object there."""
        inside = [(abs((b[2] - b[0]) * (b[3] - b[1])), q) for q, b in self.boxes.items()
                  if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
        return min(inside)[1] if inside else None

    def hit(self, x: float, y: float, scene_pos: QtCore.QPointF | None = None) -> int | None:
        q = self.label_at(scene_pos) if scene_pos is not None else None
        return q if q is not None else self.box_at(x, y)


TICK_FONT_PX = (7, 11)  # the matrix's row and column labels: smallest and usual font size


class QueryMatrixView(pg.GraphicsLayoutWidget):
    """A k x k matrix between detections (decoder self-attention), with each row and column marked
    in its detection's colour; up to 6 x 6 the values are printed, in percent. Click a cell (or a
    row's marker): rowClicked(row), the attending query; a column's marker: rowClicked(col)."""

    rowClicked = QtCore.Signal(int)
    labels = ()  # (class default: Qt may resize the widget while __init__ runs)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("#202124")
        self.plot = tile_plot(self)
        self.plot.getAxis("left").setLabel("attending query")
        self.plot.getAxis("top").setLabel("attended query")
        for axis in ("left", "top"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.markers = pg.ScatterPlotItem(symbol="s", pxMode=False, pen=None)
        self.plot.addItem(self.markers)
        self.highlight = highlight_item(self.plot)
        self.highlight.setVisible(False)
        self.texts: list[pg.TextItem] = []
        self.values = np.zeros((0, 0), np.float32)
        self.levels = (0.0, 1.0)
        self.labels: list[str] = []
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_matrix(self, values: np.ndarray, labels: list[str], colors: list[QtGui.QColor],
                   cmap: str = DEFAULT_COLORMAP) -> None:
        """values (k, k); labels and colors per row/column (the detections, in list order)."""
        k = values.shape[0]
        shape_changed = values.shape != self.values.shape
        self.values = values
        for t in self.texts:
            self.plot.removeItem(t)
        self.texts = []
        if k == 0:
            self.labels = []
            self.image.clear()
            self.markers.setData([])
            self.highlight.setVisible(False)
            for axis in ("left", "top"):
                self.plot.getAxis(axis).setTicks([[], []])
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            return
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if hi <= lo:
            hi = lo + 1e-6
        self.levels = (lo, hi)
        self.image.setImage(map_values(cmap, values, lo, hi), levels=(0, 255))
        self.image.setRect(QtCore.QRectF(0, 0, k, k))
        pos = [(i + 0.5, -0.6) for i in range(k)] + [(-0.6, i + 0.5) for i in range(k)]
        brushes = [pg.mkBrush(c) for c in colors] * 2
        self.markers.setData(pos=pos, brush=brushes, size=0.8)
        self.labels = list(labels)
        if k <= 6:  # few enough to print the numbers, in percent
            for i in range(k):
                for j in range(k):
                    v = values[i, j]
                    rgb = map_values(cmap, v, lo, hi)[:3]
                    dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140
                    t = pg.TextItem(f"{100 * v:.1f}", color="#ffffff" if dark else "#000000",
                                    anchor=(0.5, 0.5))
                    t.setPos(j + 0.5, i + 0.5)
                    self.plot.addItem(t)
                    self.texts.append(t)
        if shape_changed:
            self.plot.setRange(xRange=(-1.1, k), yRange=(-1.1, k), padding=0.02)
        self._update_ticks()

    def _update_ticks(self, *_) -> None:
        """A label on every row at any count: the font shrinks to the rows' height (down to
        TICK_FONT_PX[0]). The top axis drops the "q" when "qN" is wider than a column, and labels
        every other (third...) column when even the number is."""
        if not self.labels:
            return
        left, top = self.plot.getAxis("left"), self.plot.getAxis("top")
        try:
            dx, dy = (abs(v) for v in self.plot.vb.viewPixelSize())
        except Exception:  # not laid out yet
            dx = dy = 0.0
        lo, hi = TICK_FONT_PX
        size = hi if not dy > 0 else int(max(lo, min(hi, 0.85 / dy)))
        font = QtGui.QFont()
        font.setPixelSize(size)
        fm = QtGui.QFontMetricsF(font)
        cols = self.labels
        if dx > 0 and max(fm.horizontalAdvance(t) for t in cols) > 0.9 / dx:
            cols = [t[1:] if t[:1] == "q" else t for t in cols]
        # columns narrower than their numbers (the colour markers still name them): every step-th
        step = 1 if not dx > 0 else max(1, int(np.ceil(max(fm.horizontalAdvance(t) for t in cols) * dx / 0.9)))
        for axis in (left, top):
            axis.setStyle(tickFont=font)
        left.setTicks([[(i + 0.5, t) for i, t in enumerate(self.labels)], []])
        top.setTicks([[(i + 0.5, t) for i, t in enumerate(cols) if i % step == 0], []])

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._update_ticks()

    def set_selected(self, row: int | None) -> None:
        k = self.values.shape[0]
        if row is None or not 0 <= row < k:
            self.highlight.setVisible(False)
            return
        self.highlight.setRect(QtCore.QRectF(0, row, k, 1))
        self.highlight.setVisible(True)

    def cell_center(self, row: int, col: int) -> QtCore.QPoint:
        """Widget pixel at the centre of cell (row, col) (for tests and synthetic clicks)."""
        p = self.plot.vb.mapViewToScene(QtCore.QPointF(col + 0.5, row + 0.5))
        return self.mapFromScene(p)

    def _on_click(self, event) -> None:
        p = left_click_point(self.plot.vb, event)
        if p is None:
            return
        k = self.values.shape[0]
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= row < k and -1 <= col < k:  # a cell, or the row's colour marker
            self.rowClicked.emit(row)
        elif row == -1 and 0 <= col < k:  # a column's colour marker
            self.rowClicked.emit(col)
