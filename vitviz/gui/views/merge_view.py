"""Swin patch merging, followed for one point of the image: at each stage the token that holds it
(solid outline, one colour per stage) and the four finer tokens PatchMerging concatenated into it
(dashed, in the same colour), nested over the image, with the same trace as a text list."""
from __future__ import annotations

import html

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...core.swin.marks import trace_lines
from .image_view import ImageView
from .panel_common import show_base_image

STAGE_COLORS = ("#ffd60a", "#30d158", "#64d2ff", "#ff6ad5", "#ff9f0a", "#ffffff")


def stage_color(stage: int) -> str:
    return STAGE_COLORS[stage % len(STAGE_COLORS)]


class MergeView(QtWidgets.QWidget):
    """An image view (zoomed on the trace) and the trace as text."""

    clicked = QtCore.Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = ImageView("Patch merging")
        self.view.ci.removeItem(self.view.colorbar)  # no heatmap here
        self.view.colorbar.hide()
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.text.setStyleSheet("background:#202124; color:#e8eaed; padding:4px;")
        self.text.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.text.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Expanding)
        self.text.setMinimumWidth(200)
        font = self.text.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.text.setFont(font)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view, 3)
        lay.addWidget(self.text, 2)
        self.items: list[QtWidgets.QGraphicsItem] = []
        self.rects: dict[int, tuple] = {}  # stage -> (token rect, [part rects]) in original pixels
        self.marker = pg.ScatterPlotItem(symbol="x", size=12, pen=pg.mkPen("#ff3b30", width=2.5), brush=None)
        self.marker.setZValue(40)
        self.view.vb.addItem(self.marker)
        self.view.clicked.connect(self.clicked)

    def set_analysis(self, analysis, model_view: bool = False) -> None:
        self.view.set_crop_shade(analysis.image.size, analysis.grid.transform.visible_rect())
        show_base_image([self.view], analysis, model_view)

    def set_trace(self, analysis, point: tuple[float, float] | None, current_stage: int = 0) -> None:
        """Draw the merge trace of original pixel `point` (None: clear)."""
        for item in self.items:
            self.view.vb.removeItem(item)
        self.items, self.rects = [], {}
        steps = analysis.merge_trace(*point) if point is not None else []
        if not steps:
            self.marker.setData([], [])
            self.text.setText("Click the image: this follows the point through the stages.")
            return
        for st in steps:
            grid = analysis.stage_grid(st.stage)
            prev = analysis.stage_grid(st.stage - 1) if st.parts else None
            parts = [prev.rect(*p) if p is not None else None for p in st.parts]
            self.rects[st.stage] = (grid.rect(*st.token), parts)
            color = stage_color(st.stage)
            bold = st.stage == current_stage
            for rect in parts:
                if rect is not None:
                    self._add_rect(rect, color, 1.5, QtCore.Qt.PenStyle.DashLine, 30 + st.stage)
            self._add_rect(grid.rect(*st.token), color, 4.0 if bold else 2.5, QtCore.Qt.PenStyle.SolidLine,
                           35 + st.stage)
        self.marker.setData([point[0]], [point[1]])
        lines = []
        for st, line in zip(steps, trace_lines(steps, (analysis.grid.cell_w, analysis.grid.cell_h))):
            text = html.escape(line)
            if st.stage == current_stage:
                text = f"<b>{text}</b>"
            lines.append(f"<span style='color:{stage_color(st.stage)}'>■</span> {text}")
        self.text.setText("<br>".join(lines))
        x0, y0, x1, y1 = self.rects[steps[-1].stage][0]
        m = 0.25 * max(x1 - x0, y1 - y0)
        self.view.vb.setRange(QtCore.QRectF(x0 - m, y0 - m, x1 - x0 + 2 * m, y1 - y0 + 2 * m), padding=0)

    def _add_rect(self, rect, color: str, width: float, style, z: float) -> None:
        x0, y0, x1, y1 = rect
        for w, c, dz in ((width + 2.5, QtGui.QColor(0, 0, 0, 190), 0.0), (width, QtGui.QColor(color), 0.1)):
            item = QtWidgets.QGraphicsRectItem(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
            pen = QtGui.QPen(c, w, style)
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setZValue(z + dz)
            self.view.vb.addItem(item)
            self.items.append(item)
