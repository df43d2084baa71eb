"""DETR query (slot) specialisation, the DETR paper's Fig. 7: one unit square per decoder query
slot, each box that slot predicted drawn as a point at the box centre (normalised by its image),
green for small boxes, red for large horizontal and blue for large vertical ones. On the image on
screen each slot has one point; after "Analyse folder..." one per image. Click a slot to list the
images where it fired (best real-class score above the threshold).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..core.analysis.detr_queries import (SIZE_COLOURS, TILE_GAP, grid_columns, scatter_points, summary,
                                          tile_at, tile_origin)
from .views.tile_plot import highlight_item, tile_plot

SIZE_LABELS = {"small": "small (under 10% of the image)", "horizontal": "large, horizontal",
               "vertical": "large, vertical"}


class _Plot(pg.GraphicsLayoutWidget):
    clicked = QtCore.Signal(float, float)  # a left click, in plot coordinates

    def mousePressEvent(self, ev) -> None:
        super().mousePressEvent(ev)
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and self.plot is not None:
            p = self.plot.vb.mapSceneToView(self.mapToScene(ev.position().toPoint()))
            self.clicked.emit(p.x(), p.y())

    plot = None


class DetrQueriesView(QtWidgets.QWidget):
    slotSelected = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec = None
        self.columns = 1
        self.selected: int | None = None
        self.note = QtWidgets.QLabel("Open an image with a DETR model to see its query slots.")
        self.note.setWordWrap(True)
        self.threshold = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=0.7)
        self.threshold.setToolTip("A slot fired on an image when its best real-class score is above this")
        self.threshold.valueChanged.connect(self._on_threshold_change)
        self.view = _Plot()
        self.view.setBackground("#202124")
        self.plot = tile_plot(self.view, top_axis=False)
        self.view.plot = self.plot
        self.view.clicked.connect(self._on_click)
        self.frames = pg.PlotDataItem(connect="pairs", pen=pg.mkPen(120, 120, 120, 200, width=1))
        self.scatter = pg.ScatterPlotItem(size=5, pen=None)
        self.plot.addItem(self.frames)
        self.plot.addItem(self.scatter)
        self.mark = highlight_item(self.plot)
        self.labels: list[pg.TextItem] = []
        self.legend = QtWidgets.QLabel(" &nbsp; ".join(
            f"<span style='color: rgb{rgb}; font-size: 14pt'>&#9679;</span> {SIZE_LABELS[k]}"
            for k, rgb in SIZE_COLOURS.items()))
        self.slot_label = QtWidgets.QLabel("Click a slot to list the images where it fired.")
        self.slot_label.setWordWrap(True)
        self.fired_list = QtWidgets.QListWidget()
        side = QtWidgets.QWidget()
        sl = QtWidgets.QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.legend)
        sl.addWidget(self.slot_label)
        sl.addWidget(self.fired_list, 1)
        split = QtWidgets.QSplitter()
        split.addWidget(self.view)
        split.addWidget(side)
        split.setSizes([640, 260])
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(QtWidgets.QLabel("Fired above"))
        row.addWidget(self.threshold)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(split, 1)

    def set_specialisation(self, spec, what: str) -> None:
        """Draw `spec` (a QuerySpecialisation); `what` says where its boxes come from."""
        spec.threshold = self.threshold.value()
        self.spec = spec
        q = spec.num_queries
        self.columns = grid_columns(q)
        pts = scatter_points(spec, self.columns)
        brushes = {k: pg.mkBrush(*rgb, 200) for k, rgb in SIZE_COLOURS.items()}
        self.scatter.setData(x=pts["x"], y=pts["y"], brush=[brushes[s] for s in pts["size"]],
                             data=list(zip(pts["query"].tolist(), pts["image"].tolist())),
                             size=7 if spec.boxes.shape[0] == 1 else 4)
        segs = []
        for i in range(q):
            x0, y0 = tile_origin(i, self.columns)
            segs += [(x0, y0), (x0 + 1, y0), (x0 + 1, y0), (x0 + 1, y0 + 1),
                     (x0 + 1, y0 + 1), (x0, y0 + 1), (x0, y0 + 1), (x0, y0)]
        seg = np.asarray(segs, float)
        self.frames.setData(seg[:, 0], seg[:, 1])
        for item in self.labels:
            self.plot.removeItem(item)
        self.labels = []
        for i in range(q):
            x0, y0 = tile_origin(i, self.columns)
            t = pg.TextItem(str(i), color=(200, 200, 200), anchor=(0, 0))
            t.setPos(x0 + 0.02, y0 + 0.01)
            self.plot.addItem(t)
            self.labels.append(t)
        rows = -(-q // self.columns)
        size = (self.columns * (1 + TILE_GAP) - TILE_GAP, rows * (1 + TILE_GAP) - TILE_GAP)
        self.plot.vb.setRange(QtCore.QRectF(0, 0, *size), padding=0.02)
        self.note.setText(f"{q} query slots, {what}: each point is a box centre in its image (normalised by "
                          "the image).")
        self.select_slot(self.selected if self.selected is not None and self.selected < q else 0)

    def clear(self) -> None:
        self.spec = None
        self.scatter.clear()
        self.frames.setData([], [])
        self.fired_list.clear()

    def select_slot(self, query: int) -> None:
        """List the images where slot `query` fired, outline its square."""
        if self.spec is None:
            return
        self.selected = query
        x0, y0 = tile_origin(query, self.columns)
        self.mark.setRect(QtCore.QRectF(x0, y0, 1, 1))
        self.slot_label.setText(summary(self.spec, query) + ":")
        self.fired_list.clear()
        scores = self.spec.boxes[:, query, 4]
        for src, s in zip(self.spec.sources, scores):
            if s > self.spec.threshold:
                self.fired_list.addItem(f"{src.rsplit('/', 1)[-1]}  ({s:.2f})")
        self.slotSelected.emit(query)

    def _on_click(self, x: float, y: float) -> None:
        if self.spec is None:
            return
        q = tile_at(x, y, self.spec.num_queries, self.columns)
        if q is not None:
            self.select_slot(q)

    def _on_threshold_change(self, value: float) -> None:
        if self.spec is not None:
            self.spec.threshold = value
            self.select_slot(self.selected or 0)
