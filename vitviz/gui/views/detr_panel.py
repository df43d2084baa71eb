"""The DETR workspace: detections over the image, the selected object's decoder cross-attention,
encoder self-attention at a clicked point, a layers x heads grid, and decoder self-attention among
the detected objects.

The view state is a DetrState (vitviz.core.detr.state): threshold, object, point, layer, head,
direction, focus; shared controls, state handling and export: vitviz.gui.panel. DETR has no
"what the model sees" view: M says so in the status bar (Panel.toggle_model_view).
Mouse: in the detections view, click a box (or its label) to select that object; Shift+click, or a
click outside every box, probes the encoder at that point. In the encoder view any click probes.
Keys: Page Up/Down layer, [ and ] head, arrow keys move the encoder point by one feature cell,
D from/to the point, C switches the heads grid between the object and the point.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...core.detr.figures import cross_title, encoder_title, object_name
from ...core.detr.marks import label_text
from ...core.vit.figures import head_text
from ..panel import Panel
from .boxes import BoxOverlay, DetectionImageView, DetectionList, QueryMatrixView, box_color
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .panel_common import arrange_panel, miss_message

THRESHOLD_STEPS = 1000  # slider resolution: untrained models score ~0.01-0.05, so per-mille steps
TOP_K_HINT = 5


def _bold(text: str) -> QtWidgets.QLabel:
    return QtWidgets.QLabel(f"<b>{text}</b>")


def _marker() -> pg.ScatterPlotItem:
    """The encoder probe point: a white dot ringed in black, readable on any colour, small enough
    to leave the red outline of its feature cell visible."""
    m = pg.ScatterPlotItem(symbol="o", size=9, pen=pg.mkPen("#000000", width=1.5), brush=pg.mkBrush("#ffffff"))
    m.setZValue(50)
    return m


class DetrPanel(Panel):
    """Holds a DetrAnalysis and its DetrState (threshold, object, point, layer, head, direction)."""

    family = "detr"

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(display, parent)
        self.detections: list = []  # at the state's threshold, best first

        # views
        self.det_view = DetectionImageView("Detections")
        self.det_view.setToolTip("Click a box or its label: that object's decoder cross-attention.\n"
                                 "Shift+click (or click outside every box): encoder attention at that point.")
        self.main_view = self.det_view  # the view "as zoomed" exports follow
        self.enc_view = ImageView("Encoder self-attention")
        self.enc_view.setToolTip("Click: encoder self-attention at that point (arrow keys move it a cell).")
        self.enc_view.link_to(self.det_view)
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
        self.threshold_slider.setValue(round(self.state.threshold * THRESHOLD_STEPS))
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
        self.direction_combo.setItemText(0, "from point (where it looks)")
        self.direction_combo.setItemText(1, "to point (who looks at it)")
        self.direction_combo.setToolTip("Encoder: row or column of the attention matrix at the point (D)")
        self.focus_combo = QtWidgets.QComboBox()
        self.focus_combo.addItem("decoder: selected object", "query")
        self.focus_combo.addItem("encoder: point", "point")
        self.focus_combo.setToolTip("What the layers x heads grid shows (C)")
        self.object_map_combo = QtWidgets.QComboBox()
        self.object_map_combo.addItem("cross-attention (layer, head)", "attention")
        self.object_map_combo.addItem("relevance: why this box", "relevance")
        self.object_map_combo.setToolTip(
            "The selected object's map: where its query looks at this layer and head, or its relevance\n"
            "(Chefer et al. 2021: attention weighted by the gradient of its class score, every layer;\n"
            "a backward pass, computed in the background)")
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
        form.addRow("Object map", self.object_map_combo)
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
        self.focus_combo.currentIndexChanged.connect(self._on_focus_change)
        self.object_map_combo.currentIndexChanged.connect(
            lambda i: self.update_state(object_map=self.object_map_combo.itemData(i)))
        self.det_view.clickedAt.connect(self._on_det_click)
        self.enc_view.clicked.connect(self._on_enc_click)
        self.det_view.keyMoved.connect(self.move_point)
        self.enc_view.keyMoved.connect(self.move_point)
        self.watch_pointer(self.enc_view)
        self.det_view.clickedAt.connect(lambda x, y, *_: self._on_pointer(x, y))
        self.det_view.hovered.connect(self._on_pointer)
        self.grid_view.tileClicked.connect(self._on_tile_click)
        self.matrix_view.rowClicked.connect(self._on_matrix_row)
        self._update_threshold_label()

    # -- state as the tests and the window read it ---------------------------------------------
    threshold = property(lambda self: self.state.threshold)
    layer = property(lambda self: self.state.layer)
    head = property(lambda self: self.state.head)
    direction = property(lambda self: self.state.direction)
    point = property(lambda self: self.state.point, doc="The encoder probe, original pixels.")

    @property
    def query(self) -> int | None:
        """The selected object query (None: no object)."""
        q = self.state.query
        return q if isinstance(q, int) else None

    @property
    def cell(self) -> tuple[int, int] | None:
        return None if self.state.cell is None else tuple(self.state.cell)

    @property
    def focus(self) -> str:
        """What the heads grid shows: "query" (the object's decoder maps) or "point" (the encoder's)."""
        return self.state.shown_focus()

    @property
    def decoder_layer(self) -> int:
        return self.state.decoder_layer(self.analysis)

    @property
    def encoder_layer(self) -> int:
        return self.state.encoder_layer(self.analysis)

    def detection_rank(self, query: int | None) -> int | None:
        return next((i for i, d in enumerate(self.detections) if d.query == query), None)

    def set_state(self, state) -> None:
        """As Panel.set_state; the state is resolved first (the object, the point's cell)."""
        if self.analysis is not None:
            state = state.resolved(self.analysis)
        super().set_state(state)

    def sync_controls(self) -> None:
        super().sync_controls()
        s, a = self.state, self.analysis
        with QtCore.QSignalBlocker(self.threshold_slider):
            self.threshold_slider.setValue(round(s.threshold * THRESHOLD_STEPS))
        self._update_threshold_label()
        with QtCore.QSignalBlocker(self.layer_spin):
            if a is not None:
                self.layer_spin.setRange(0, max(a.num_layers, a.num_encoder_layers) - 1)
            self.layer_spin.setValue(s.layer if s.layer >= 0 else self.layer_spin.maximum() + 1 + s.layer)
        with QtCore.QSignalBlocker(self.focus_combo):
            self.focus_combo.setCurrentIndex(self.focus_combo.findData(s.shown_focus()))
        with QtCore.QSignalBlocker(self.object_map_combo):
            self.object_map_combo.setCurrentIndex(self.object_map_combo.findData(s.object_map))

    def on_new_analysis(self) -> None:
        a = self.analysis
        img = np.asarray(a.image)
        for view in (self.det_view, self.enc_view):
            view.set_image(img)
            view.set_crop_shade(a.image.size, a.grid.transform.visible_rect())
        self._update_detections()

    def on_state_change(self, old, new) -> None:
        display = ("colormap", "opacity", "overlay", "grid", "layer", "head")
        if any(getattr(old, k) != getattr(new, k) for k in display):
            if old.threshold != new.threshold:
                self._update_detections()
            self.refresh()
            return
        if old.threshold != new.threshold:
            self._update_detections()
        if (old.threshold, old.query, old.object_map) != (new.threshold, new.query, new.object_map):
            self.boxes.set_selected(new.query)
            self.det_list.set_current(self.detection_rank(self.query))
            self.refresh_query()
            self.refresh_matrix()
        if (old.point, old.cell, old.direction) != (new.point, new.cell, new.direction):
            self.refresh_point()
        self.refresh_grid()

    # -- commands ------------------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        """Show detections scoring above `value` (exact, finer than the slider's steps)."""
        if self.analysis is None:
            self.state = self.state.replace(threshold=min(max(float(value), 0.0), 1.0))
            self.sync_controls()
            return
        self.set_state(self.state.at_threshold(min(max(float(value), 0.0), 1.0), self.analysis))

    def select_query(self, query: int | None) -> None:
        """Select an object query (None: no object): its cross-attention, and the grid shows it."""
        self.update_state(query=query, detection=None, focus="query" if query is not None else self.state.focus)

    def set_point(self, x: float, y: float) -> bool:
        """Probe the encoder at original pixel (x, y). False (and a status message) off the image."""
        if self.analysis is None:
            return False
        if self.analysis.cell_at(x, y) is None:
            self.statusMessage.emit(miss_message(self.analysis, x, y, "feature cell"))
            return False
        self.update_state(point=(float(x), float(y)), cell=None, focus="point")
        return True

    def select_cell(self, row: int, col: int) -> None:
        """Probe the encoder at feature cell (row, col); the point moves to the cell's centre."""
        self.update_state(cell=(int(row), int(col)), point=None, focus="point")

    def move_point(self, d_row: int, d_col: int) -> None:
        if self.analysis is None or self.cell is None:
            return
        rows, cols = self.analysis.valid_shape
        r, c = self.cell
        self.select_cell(min(max(r + d_row, 0), rows - 1), min(max(c + d_col, 0), cols - 1))

    def step_layer(self, delta: int) -> None:
        self.layer_spin.setValue(self.layer_spin.value() + delta)

    def toggle_cls(self) -> None:
        """C: the heads grid switches between the selected object and the point."""
        self.focus_combo.setCurrentIndex(1 - self.focus_combo.currentIndex())

    # -- handlers ------------------------------------------------------------------------------
    def _on_threshold_change(self, value: int) -> None:
        self.set_threshold(value / THRESHOLD_STEPS)

    def _update_threshold_label(self) -> None:
        self.threshold_label.setText(f"{self.state.threshold:.3g}")

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
        self.update_state(layer=value)

    def _on_focus_change(self, index: int) -> None:
        self.update_state(focus=self.focus_combo.itemData(index))

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
        self.update_state(layer=layer, head=head)

    def _on_matrix_row(self, row: int) -> None:
        if 0 <= row < len(self.detections):
            self.select_query(self.detections[row].query)

    def readout(self, x: float, y: float) -> str | None:
        a, s = self.analysis, self.state
        cell = a.cell_at(x, y)
        if cell is None:
            return None
        r, c = cell
        text = f"feature cell (row {r}, col {c})"
        hit = self.boxes.box_at(x, y)
        if hit is not None:
            text += f" · in the box of {object_name(a, hit)} (query {hit})"
        if self.query is not None:
            m = self.query_map()
            name = "relevance" if s.object_map == "relevance" else "cross-attention"
            text += f" · {name} " + ("computing…" if m is None else f"{m[r, c]:.4g}")
        text += f" · encoder attention {s.direction} the point {self.point_map()[r, c]:.4g}"
        return text

    # -- drawing -------------------------------------------------------------------------------
    def _update_detections(self) -> None:
        """Detections at the state's threshold -> boxes, list, hint."""
        self.detections = self.analysis.detections(self.state.threshold)
        self.boxes.selected = self.query
        self.boxes.set_boxes([(d.query, d.box, label_text(d), box_color(i))
                              for i, d in enumerate(self.detections)])
        self.det_list.set_detections(self.detections, self.query)
        if self.detections:
            self.hint_label.setVisible(False)
            return
        scores = self.analysis.best_scores()
        best = int(np.argmax(scores))
        self.hint_label.setText(
            f"No object scores above {self.state.threshold:.3g} (the best: {scores[best]:.3f}, query {best}). "
            f"<a href='top'>Show the {TOP_K_HINT} best</a>")
        self.hint_label.setVisible(True)

    def refresh(self) -> None:
        if self.analysis is None:
            return
        xs, ys = self.analysis.grid.edges()
        for view in (self.det_view, self.enc_view):
            view.set_grid(xs, ys, self.state.grid)
        self.boxes.set_selected(self.query)
        self.det_list.set_current(self.detection_rank(self.query))
        self.refresh_query()
        self.refresh_point()
        self.refresh_grid()
        self.refresh_matrix()

    def query_map(self) -> np.ndarray | None:
        """The selected object's map; None for no object, or while the worker computes relevance."""
        if self.query is None:
            return None
        if self.state.object_map == "relevance":  # a backward pass: in the worker, never here
            return self.compute_method_map(self._method("relevance"), {"target": self.query})
        return self.analysis.cross_attention(self.decoder_layer, self.state.head, self.query)

    def on_method_map_ready(self) -> None:
        self.refresh_query()

    def point_map(self) -> np.ndarray | None:
        if self.cell is None:
            return None
        return self.analysis.encoder_attention_map(self.encoder_layer, self.state.head,
                                                   direction=self.state.direction, cell=self.cell)

    def _set_map(self, view, values) -> None:
        s = self.state
        view.set_map(values, self.analysis.grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay)

    def refresh_query(self) -> None:
        m = self.query_map()
        if m is None and self.query is not None:  # relevance on its way: the previous map stays
            self.det_view.set_title(cross_title(self.analysis, self.state) + " · computing…")
            return
        self._set_map(self.det_view, m)
        if m is None:
            self.det_view.set_title("Detections · no object selected")
            self.query_label.setText("object: none (lower the threshold)" if not self.detections
                                     else "object: none")
            return
        self.det_view.set_title(cross_title(self.analysis, self.state))
        self.query_label.setText(f"object: {object_name(self.analysis, self.query)}, query {self.query}"
                                 + ("" if self.state.detection is not None else " (below the threshold)"))

    def refresh_point(self) -> None:
        a = self.analysis
        m = self.point_map()
        self._set_map(self.enc_view, m)
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
        self.enc_view.set_title(encoder_title(a, self.state))
        self.point_label.setText(f"point: ({self.point[0]:.0f}, {self.point[1]:.0f}) px, "
                                 f"feature cell (row {r}, col {c})")

    def refresh_grid(self) -> None:
        a, s = self.analysis, self.state
        with QtCore.QSignalBlocker(self.focus_combo):
            self.focus_combo.setCurrentIndex(self.focus_combo.findData(self.focus))
        head = s.head if isinstance(s.head, int) else None
        if self.focus == "query":
            self.grid_view.set_maps(a.head_maps(self.query), s.colormap)
            self.grid_view.set_selected(self.decoder_layer, head)
            self.grid_label.setText(f"<b>Decoder cross-attention</b> of {object_name(a, self.query)} "
                                    f"(query {self.query}): decoder layers × heads, each tile scaled on its own")
        elif self.cell is not None:
            self.grid_view.set_maps(a.encoder_head_maps(direction=s.direction, cell=self.cell), s.colormap)
            self.grid_view.set_selected(self.encoder_layer, head)
            self.grid_label.setText(f"<b>Encoder self-attention</b> {s.direction} cell {self.cell}: "
                                    "encoder layers × heads, each tile scaled on its own")

    def refresh_matrix(self) -> None:
        a, s, dets = self.analysis, self.state, self.detections
        queries = [d.query for d in dets]
        values = (a.decoder_self_attention(self.decoder_layer, s.head, queries) if queries
                  else np.zeros((0, 0), np.float32))
        self.matrix_view.set_matrix(values, [f"q{q}" for q in queries],
                                    [box_color(i) for i in range(len(dets))], s.colormap)
        self.matrix_view.set_selected(self.detection_rank(self.query))
        self.matrix_label.setText(
            f"<b>Decoder self-attention</b> among the {len(dets)} detections · layer {self.decoder_layer} · "
            f"{head_text(s.head)}" + (" · values in %" if len(dets) <= 6 else "") if dets
            else "<b>Decoder self-attention</b>: no detections to compare")

    # -- export --------------------------------------------------------------------------------
    def focused_view(self) -> str:
        focus = {self.enc_view: "encoder", self.grid_view: "grid", self.det_view: "detections"}
        return next((name for w, name in focus.items() if w.hasFocus()), "detections")
