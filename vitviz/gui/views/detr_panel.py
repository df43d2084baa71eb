"""The DETR workspace: detections over the image, the selected object's decoder cross-attention,
encoder self-attention at a clicked point, a layers x heads grid, and decoder self-attention among
the detected objects.

Mouse: in the detections view, click a box (or its label) to select that object; Shift+click, or a
click outside every box, probes the encoder at that point. In the encoder view any click probes.
Keys: Page Up/Down layer, [ and ] head, arrow keys move the encoder point by one feature cell,
D from/to the point, C switches the heads grid between the object and the point.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...core.analysis.heads import FUSIONS
from .boxes import (BoxOverlay, DetectionImageView, DetectionList, QueryMatrixView, box_color,
                    score_text)
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .panel_common import arrange_panel

THRESHOLD_STEPS = 1000  # slider resolution: untrained models score ~0.01-0.05, so per-mille steps
DEFAULT_THRESHOLD = 0.7  # DETR's own demo threshold
TOP_K_HINT = 5


def _bold(text: str) -> QtWidgets.QLabel:
    return QtWidgets.QLabel(f"<b>{text}</b>")


def _marker() -> pg.ScatterPlotItem:
    """The encoder probe point: a white dot ringed in black, readable on any colour, small enough
    to leave the red outline of its feature cell visible."""
    m = pg.ScatterPlotItem(symbol="o", size=9, pen=pg.mkPen("#000000", width=1.5), brush=pg.mkBrush("#ffffff"))
    m.setZValue(50)
    return m


class DetrPanel(QtWidgets.QWidget):
    """Holds a DetrAnalysis and the view state (threshold, object, point, layer, head, direction)."""

    family = "detr"
    statusMessage = QtCore.Signal(str)

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(parent)
        self.display = display
        self.analysis = None
        self.detections: list = []
        self.query: int | None = None  # selected object query
        self.point: tuple[float, float] | None = None  # encoder probe, original pixels
        self.cell: tuple[int, int] | None = None  # its feature cell (row, col)
        self.layer = 0
        self.head: int | str = "mean"
        self.direction = "from"
        self.focus = "query"  # what the heads grid shows: "query" (decoder) or "point" (encoder)
        self._threshold = DEFAULT_THRESHOLD  # exact; the slider shows it to 1/THRESHOLD_STEPS

        # views
        self.det_view = DetectionImageView("Detections")
        self.det_view.setToolTip("Click a box or its label: that object's decoder cross-attention.\n"
                                 "Shift+click (or click outside every box): encoder attention at that point.")
        self.enc_view = ImageView("Encoder self-attention")
        self.enc_view.setToolTip("Click: encoder self-attention at that point (arrow keys move it a cell).")
        self.enc_view.link_to(self.det_view)
        for view in (self.det_view, self.enc_view):
            # room for 4-decimal tick labels: DETR's ~1000 cells put attention near 0.001, and the
            # colour bar's default width hides labels that do not fit
            view.colorbar.axis.setWidth(62)
        self.boxes = BoxOverlay(self.det_view.vb)
        self.det_marker, self.enc_marker = _marker(), _marker()
        self.det_view.vb.addItem(self.det_marker)
        self.enc_view.vb.addItem(self.enc_marker)
        self.grid_view = HeadGridView("layer", "head")
        self.grid_label = QtWidgets.QLabel()
        self.grid_label.setWordWrap(True)
        self.matrix_view = QueryMatrixView()
        self.matrix_view.setToolTip("Decoder self-attention among the detected objects: row = the query "
                                    "that attends, column = the one attended to. Click a row to select it.")
        self.matrix_label = QtWidgets.QLabel()
        self.matrix_label.setWordWrap(True)

        # controls
        self.threshold_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, THRESHOLD_STEPS - 1)
        self.threshold_slider.setValue(round(DEFAULT_THRESHOLD * THRESHOLD_STEPS))
        self.threshold_slider.setToolTip("Show objects whose best class probability is above this")
        self.threshold_label = QtWidgets.QLabel()
        self.threshold_label.setMinimumWidth(40)
        self.hint_label = QtWidgets.QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.hint_label.setStyleSheet("color:#b26a00;")
        self.hint_label.setVisible(False)
        self.det_list = DetectionList()
        self.layer_spin = QtWidgets.QSpinBox()
        self.layer_spin.setToolTip("Layer of the decoder and the encoder (Page Up / Page Down)")
        self.head_combo = QtWidgets.QComboBox()
        self.head_combo.setToolTip("Head, or all heads fused ([ and ])")
        self.direction_combo = QtWidgets.QComboBox()
        self.direction_combo.addItem("from point (where it looks)", "from")
        self.direction_combo.addItem("to point (who looks at it)", "to")
        self.direction_combo.setToolTip("Encoder: row or column of the attention matrix at the point (D)")
        self.focus_combo = QtWidgets.QComboBox()
        self.focus_combo.addItem("decoder: selected object", "query")
        self.focus_combo.addItem("encoder: point", "point")
        self.focus_combo.setToolTip("What the layers x heads grid shows (C)")
        self.query_label = QtWidgets.QLabel("object: none")
        self.point_label = QtWidgets.QLabel("point: none")
        for lab in (self.query_label, self.point_label):
            lab.setWordWrap(True)

        threshold_row = QtWidgets.QHBoxLayout()
        threshold_row.addWidget(self.threshold_slider, 1)
        threshold_row.addWidget(self.threshold_label)
        form = QtWidgets.QFormLayout()
        form.addRow(_bold("Detections"))
        form.addRow("Threshold", threshold_row)
        form.addRow(self.hint_label)
        form.addRow(self.det_list)
        form.addRow(_bold("Attention"))
        form.addRow("Layer", self.layer_spin)
        form.addRow("Head", self.head_combo)
        form.addRow("Encoder", self.direction_combo)
        form.addRow("Heads grid", self.focus_combo)
        form.addRow(self.query_label)
        form.addRow(self.point_label)

        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(self.det_view)
        left.addWidget(self.enc_view)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        for label, view in ((self.grid_label, self.grid_view), (self.matrix_label, self.matrix_view)):
            box = QtWidgets.QWidget()
            lay = QtWidgets.QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.setSpacing(2)
            lay.addWidget(label)
            lay.addWidget(view, 1)
            right.addWidget(box)
        right.setSizes([520, 300])
        views = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        views.addWidget(left)
        views.addWidget(right)
        views.setSizes([560, 480])
        arrange_panel(self, form, views, display)

        self.threshold_slider.valueChanged.connect(self._on_threshold_change)
        self.hint_label.linkActivated.connect(self._on_hint_link)
        self.det_list.currentRowChanged.connect(self._on_list_row)
        self.layer_spin.valueChanged.connect(self._on_layer_change)
        self.head_combo.currentIndexChanged.connect(self._on_head_change)
        self.direction_combo.currentIndexChanged.connect(self._on_direction_change)
        self.focus_combo.currentIndexChanged.connect(self._on_focus_change)
        self.det_view.clickedAt.connect(self._on_det_click)
        self.enc_view.clicked.connect(self._on_enc_click)
        self.det_view.keyMoved.connect(self.move_point)
        self.enc_view.keyMoved.connect(self.move_point)
        self.grid_view.tileClicked.connect(self._on_tile_click)
        self.matrix_view.rowClicked.connect(self._on_matrix_row)
        display.changed.connect(self.refresh)
        self._update_threshold_label()

    # -- derived state -------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._threshold

    def set_threshold(self, value: float) -> None:
        """Show detections scoring above `value` (exact, finer than the slider's steps)."""
        self._threshold = min(max(float(value), 0.0), 1.0)
        with QtCore.QSignalBlocker(self.threshold_slider):
            self.threshold_slider.setValue(round(self._threshold * THRESHOLD_STEPS))
        self._on_threshold_set()

    @property
    def decoder_layer(self) -> int:
        return min(self.layer, self.analysis.num_layers - 1)

    @property
    def encoder_layer(self) -> int:
        return min(self.layer, self.analysis.num_encoder_layers - 1)

    def detection_rank(self, query: int | None) -> int | None:
        for i, d in enumerate(self.detections):
            if d.query == query:
                return i
        return None

    # -- state ---------------------------------------------------------------------------------
    def set_analysis(self, analysis) -> None:
        """Show a new result. Layer, head, threshold and the point are kept when they still apply."""
        first = self.analysis is None
        self.analysis = analysis
        n_layers = max(analysis.num_layers, analysis.num_encoder_layers)
        self.layer = n_layers - 1 if first else min(self.layer, n_layers - 1)
        if isinstance(self.head, int) and self.head >= analysis.num_heads:
            self.head = "mean"
        with QtCore.QSignalBlocker(self.layer_spin), QtCore.QSignalBlocker(self.head_combo):
            self.layer_spin.setRange(0, n_layers - 1)
            self.layer_spin.setValue(self.layer)
            self.head_combo.clear()
            for f in FUSIONS:
                self.head_combo.addItem(f"all heads: {f}", f)
            for h in range(analysis.num_heads):
                self.head_combo.addItem(f"head {h}", h)
            self.head_combo.setCurrentIndex(self.head_combo.findData(self.head))
        if self.point is None or analysis.cell_at(*self.point) is None:
            w, h = analysis.image.size
            self.point = (w / 2, h / 2)
        self.cell = analysis.cell_at(*self.point)
        img = np.asarray(analysis.image)
        for view in (self.det_view, self.enc_view):
            view.set_image(img)
            view.set_crop_shade(analysis.image.size, analysis.grid.transform.visible_rect())
        if self.query is not None and self.query >= analysis.num_queries:
            self.query = None
        self._update_detections(keep_query=not first)
        self.refresh()

    def _update_detections(self, keep_query: bool = True) -> None:
        """Detections at the current threshold -> boxes, list; the selection follows if it can."""
        a = self.analysis
        self.detections = a.detections(self.threshold)
        queries = [d.query for d in self.detections]
        if not (keep_query and self.query in queries):
            self.query = queries[0] if queries else None
        self.boxes.selected = self.query
        self.boxes.set_boxes([(d.query, d.box, f"{d.name} {score_text(d.score)}", box_color(i))
                              for i, d in enumerate(self.detections)])
        self.det_list.set_detections(self.detections, self.query)
        self._update_hint()

    def _update_hint(self) -> None:
        if self.detections:
            self.hint_label.setVisible(False)
            return
        scores = self.analysis.best_scores()
        best = int(np.argmax(scores))
        self.hint_label.setText(
            f"No object scores above {self.threshold:.3g} (the best: {scores[best]:.3f}, query {best}). "
            f"<a href='top'>Show the {TOP_K_HINT} best</a>")
        self.hint_label.setVisible(True)

    def select_query(self, query: int | None) -> None:
        """Select an object query (None: no object): its cross-attention, and the grid shows it."""
        self.query = query
        if query is not None:
            self.focus = "query"
        self.boxes.set_selected(query)
        self.det_list.set_current(self.detection_rank(query))
        self.refresh_query()
        self.refresh_grid()
        self.refresh_matrix()

    def set_point(self, x: float, y: float) -> bool:
        """Probe the encoder at original pixel (x, y). False (and a status message) off the image."""
        if self.analysis is None:
            return False
        cell = self.analysis.cell_at(x, y)
        if cell is None:
            self.statusMessage.emit(f"No feature cell at ({x:.0f}, {y:.0f}): that point is outside the image.")
            return False
        self.point, self.cell, self.focus = (float(x), float(y)), cell, "point"
        self.refresh_point()
        self.refresh_grid()
        return True

    def select_cell(self, row: int, col: int) -> None:
        """Probe the encoder at feature cell (row, col); the point moves to the cell's centre."""
        a = self.analysis
        x, y = a.cell_center(row, col)
        w, h = a.image.size
        x, y = min(max(x, 0.0), w - 0.5), min(max(y, 0.0), h - 0.5)  # edge cells overhang the image
        self.point, self.cell, self.focus = (x, y), (row, col), "point"
        self.refresh_point()
        self.refresh_grid()

    def move_point(self, d_row: int, d_col: int) -> None:
        if self.analysis is None or self.cell is None:
            return
        rows, cols = self.analysis.valid_shape
        r, c = self.cell
        self.select_cell(min(max(r + d_row, 0), rows - 1), min(max(c + d_col, 0), cols - 1))

    def step_layer(self, delta: int) -> None:
        self.layer_spin.setValue(self.layer_spin.value() + delta)

    def step_head(self, delta: int) -> None:
        i = (self.head_combo.currentIndex() + delta) % max(1, self.head_combo.count())
        self.head_combo.setCurrentIndex(i)

    def toggle_cls(self) -> None:
        """C: the heads grid switches between the selected object and the point."""
        self.focus_combo.setCurrentIndex(1 - self.focus_combo.currentIndex())

    def toggle_direction(self) -> None:
        self.direction_combo.setCurrentIndex(1 - self.direction_combo.currentIndex())

    # -- handlers ------------------------------------------------------------------------------
    def _on_threshold_change(self, value: int) -> None:
        self._threshold = value / THRESHOLD_STEPS
        self._on_threshold_set()

    def _on_threshold_set(self) -> None:
        self._update_threshold_label()
        if self.analysis is not None:
            self._update_detections()
            self.refresh_query()
            self.refresh_grid()
            self.refresh_matrix()

    def _update_threshold_label(self) -> None:
        self.threshold_label.setText(f"{self.threshold:.3g}")

    def _on_hint_link(self, _link: str) -> None:
        """Lower the threshold to between the k-th and (k+1)-th best scores: the best k show."""
        scores = np.sort(self.analysis.best_scores())[::-1].astype(np.float64)
        k = min(TOP_K_HINT, len(scores))
        below = scores[k] if k < len(scores) else 0.0
        self.set_threshold((scores[k - 1] + below) / 2)

    def _on_list_row(self, row: int) -> None:
        if 0 <= row < len(self.detections):
            self.select_query(self.detections[row].query)

    def _on_layer_change(self, value: int) -> None:
        self.layer = value
        self.refresh_maps()

    def _on_head_change(self, index: int) -> None:
        data = self.head_combo.itemData(index)
        if data is not None:
            self.head = data
            self.refresh_maps()

    def _on_direction_change(self, index: int) -> None:
        self.direction = self.direction_combo.itemData(index)
        self.refresh_point()
        self.refresh_grid()

    def _on_focus_change(self, index: int) -> None:
        self.focus = self.focus_combo.itemData(index)
        self.refresh_grid()

    def _on_det_click(self, x: float, y: float, shift: bool, scene_pos: QtCore.QPointF) -> None:
        if self.analysis is None:
            return
        if not shift:
            q = self.boxes.hit(x, y, scene_pos)
            if q is not None:
                self.select_query(q)
                return
        self.set_point(x, y)

    def _on_enc_click(self, x: float, y: float) -> None:
        self.set_point(x, y)

    def _on_tile_click(self, layer: int, head: int) -> None:
        with QtCore.QSignalBlocker(self.layer_spin), QtCore.QSignalBlocker(self.head_combo):
            self.layer_spin.setValue(layer)
            self.head_combo.setCurrentIndex(self.head_combo.findData(head))
        self.layer, self.head = layer, head
        self.refresh_maps()

    def _on_matrix_row(self, row: int) -> None:
        if 0 <= row < len(self.detections):
            self.select_query(self.detections[row].query)

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.analysis is None:
            return
        xs, ys = self.analysis.grid.edges()
        for view in (self.det_view, self.enc_view):
            view.set_grid(xs, ys, self.display.show_grid)
        self.refresh_query()
        self.refresh_point()
        self.refresh_grid()
        self.refresh_matrix()

    def refresh_maps(self) -> None:
        """After a layer or head change: everything that depends on them."""
        if self.analysis is None:
            return
        self.refresh_query()
        self.refresh_point()
        self.refresh_grid()
        self.refresh_matrix()

    def _head_text(self) -> str:
        return f"head {self.head}" if isinstance(self.head, int) else f"heads {self.head}"

    def query_map(self) -> np.ndarray | None:
        if self.query is None:
            return None
        return self.analysis.cross_attention(self.decoder_layer, self.head, self.query)

    def point_map(self) -> np.ndarray | None:
        if self.cell is None:
            return None
        return self.analysis.encoder_attention_map(self.encoder_layer, self.head, direction=self.direction,
                                                   cell=self.cell)

    def refresh_query(self) -> None:
        if self.analysis is None:
            return
        a, d = self.analysis, self.display
        m = self.query_map()
        self.det_view.set_map(m, a.grid.extent(), d.colormap, opacity=d.opacity)
        if m is None:
            self.det_view.set_title("Detections · no object selected")
            self.query_label.setText("object: none (lower the threshold)" if not self.detections
                                     else "object: none")
            return
        rank = self.detection_rank(self.query)
        name = self._query_name(self.query)
        self.det_view.set_title(f"Decoder cross-attention · {name} (query {self.query}) · "
                                f"layer {self.decoder_layer} · {self._head_text()}")
        self.query_label.setText(f"object: {name}, query {self.query}"
                                 + ("" if rank is not None else " (below the threshold)"))

    def _query_name(self, query: int) -> str:
        probs = self.analysis.probabilities()[query, :-1]
        return self.analysis.class_name(int(np.argmax(probs)))

    def refresh_point(self) -> None:
        if self.analysis is None:
            return
        a, d = self.analysis, self.display
        m = self.point_map()
        self.enc_view.set_map(m, a.grid.extent(), d.colormap, opacity=d.opacity)
        if m is None:
            self.enc_view.set_selection(None)
            for marker in (self.det_marker, self.enc_marker):
                marker.setData([])
            self.point_label.setText("point: none")
            return
        r, c = self.cell
        self.enc_view.set_selection(a.grid.rect(r, c))
        for marker in (self.det_marker, self.enc_marker):
            marker.setData(pos=[self.point])
        arrow = "from" if self.direction == "from" else "to"
        self.enc_view.set_title(f"Encoder self-attention {arrow} cell ({r}, {c}) · "
                                f"layer {self.encoder_layer} · {self._head_text()}")
        self.point_label.setText(f"point: ({self.point[0]:.0f}, {self.point[1]:.0f}) px, "
                                 f"feature cell (row {r}, col {c})")

    def refresh_grid(self) -> None:
        if self.analysis is None:
            return
        a, cmap = self.analysis, self.display.colormap
        focus = self.focus
        if focus == "query" and self.query is None:
            focus = "point"  # nothing to show for an object: show the point instead
        with QtCore.QSignalBlocker(self.focus_combo):
            self.focus_combo.setCurrentIndex(self.focus_combo.findData(focus))
        head = self.head if isinstance(self.head, int) else None
        if focus == "query":
            self.grid_view.set_maps(a.head_maps(self.query), cmap)
            self.grid_view.set_selected(self.decoder_layer, head)
            self.grid_label.setText(f"<b>Decoder cross-attention</b> of {self._query_name(self.query)} "
                                    f"(query {self.query}): decoder layers × heads, each tile scaled on its own")
        elif self.cell is not None:
            self.grid_view.set_maps(a.encoder_head_maps(direction=self.direction, cell=self.cell), cmap)
            self.grid_view.set_selected(self.encoder_layer, head)
            self.grid_label.setText(f"<b>Encoder self-attention</b> {self.direction} cell {self.cell}: "
                                    "encoder layers × heads, each tile scaled on its own")

    def refresh_matrix(self) -> None:
        if self.analysis is None:
            return
        a = self.analysis
        dets = self.detections
        queries = [d.query for d in dets]
        values = (a.decoder_self_attention(self.decoder_layer, self.head, queries) if queries
                  else np.zeros((0, 0), np.float32))
        self.matrix_view.set_matrix(values, [f"q{q}" for q in queries],
                                    [box_color(i) for i in range(len(dets))], self.display.colormap)
        self.matrix_view.set_selected(self.detection_rank(self.query))
        self.matrix_label.setText(
            f"<b>Decoder self-attention</b> among the {len(dets)} detections · layer {self.decoder_layer} · "
            f"{self._head_text()}" + (" · values in %" if len(dets) <= 6 else "") if dets else "<b>Decoder self-attention</b>: no detections to compare")

    def view_settings(self) -> dict:
        """What is shown, for captions, sidecars and reproducing a figure."""
        return {"family": "detr", "threshold": self.threshold, "query": self.query,
                "detections": [d.query for d in self.detections],
                "point": list(self.point) if self.point is not None else None,
                "cell": list(self.cell) if self.cell is not None else None,
                "layer": self.layer,
                "decoder_layer": self.decoder_layer if self.analysis is not None else None,
                "encoder_layer": self.encoder_layer if self.analysis is not None else None,
                "head": self.head, "direction": self.direction, "focus": self.focus,
                **self.display.settings()}

    # -- export --------------------------------------------------------------------------------
    def export_sources(self, settings: dict | None = None):
        """What this panel can export (vitviz.gui.export), for view_settings() updated with
        `settings` (None: what is on screen): "detections", "attention", "encoder", "grid", "head:H".
        The settings keys (threshold, layer, head, query as a detection number or qN, point, ...)
        are documented in detr_export."""
        from .detr_export import export_sources

        return export_sources(self, settings)
