"""The ViT workspace: attention of the selected patch, rollout beside it, the heads x layers grid,
top-5 predictions, and the controls that drive them."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...core.analysis.heads import FUSIONS
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .panel_common import (arrange_panel, fill_head_combo, fill_predictions, miss_message, model_view_check,
                           predictions_list, show_base_image)


class ViTPanel(QtWidgets.QWidget):
    """Holds a ViTAnalysis and the view state (layer, head, query, direction)."""

    family = "vit"
    statusMessage = QtCore.Signal(str)

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(parent)
        self.display = display
        self.analysis = None
        self.layer = 0
        self.head: int | str = "mean"
        self.query: tuple[int, int] | str = "cls"
        self.direction = "from"
        # what the token-grid lines and the heads x layers grid were last drawn for: redrawing
        # them when that has not changed cost a third of a layer/head switch (vitviz bench)
        self._lines_for: tuple | None = None
        self._grid_for: tuple | None = None

        self.main_view = ImageView("Attention")
        self.rollout_view = ImageView("Rollout")
        self.rollout_view.link_to(self.main_view)
        self.grid_view = HeadGridView("layer", "head")

        # controls
        self.layer_spin = QtWidgets.QSpinBox()
        self.layer_spin.setToolTip("Layer (Page Up / Page Down)")
        self.head_combo = QtWidgets.QComboBox()
        self.head_combo.setToolTip("Head, or all heads fused ([ and ])")
        self.cls_button = QtWidgets.QPushButton("CLS query")
        self.cls_button.setCheckable(True)
        self.cls_button.setChecked(True)
        self.cls_button.setToolTip("Show the class token's attention (C). Click a patch to query it.")
        self.direction_combo = QtWidgets.QComboBox()
        self.direction_combo.addItem("from query (where it looks)", "from")
        self.direction_combo.addItem("to query (who looks at it)", "to")
        self.direction_combo.setToolTip("Row or column of the attention matrix (D)")
        self.query_label = QtWidgets.QLabel("query: CLS")
        self.rollout_fusion = QtWidgets.QComboBox()
        self.rollout_fusion.addItems(FUSIONS)
        self.discard_spin = QtWidgets.QDoubleSpinBox()
        self.discard_spin.setRange(0.0, 0.99)
        self.discard_spin.setSingleStep(0.05)
        self.discard_spin.setToolTip("Share of the weakest attention links dropped per layer before rolling out")
        self.model_view_check = model_view_check()
        self.predictions = predictions_list()

        form = QtWidgets.QFormLayout()
        form.addRow("Layer", self.layer_spin)
        form.addRow("Head", self.head_combo)
        form.addRow(self.cls_button, self.query_label)
        form.addRow("Direction", self.direction_combo)
        form.addRow(self.model_view_check)
        form.addRow(QtWidgets.QLabel("<b>Rollout</b>"))
        form.addRow("Head fusion", self.rollout_fusion)
        form.addRow("Discard ratio", self.discard_spin)
        form.addRow(QtWidgets.QLabel("<b>Top-5 predictions</b>"))
        form.addRow(self.predictions)

        # Attention and rollout stacked at equal size: linked views need the same shape to show the
        # same region; the heads x layers grid gets the other half.
        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(self.main_view)
        left.addWidget(self.rollout_view)
        views = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        views.addWidget(left)
        views.addWidget(self.grid_view)
        views.setSizes([520, 560])
        arrange_panel(self, form, views, display)

        self.layer_spin.valueChanged.connect(self._on_layer_change)
        self.head_combo.currentIndexChanged.connect(self._on_head_change)
        self.cls_button.toggled.connect(self._on_cls_toggle)
        self.direction_combo.currentIndexChanged.connect(self._on_direction_change)
        self.rollout_fusion.currentIndexChanged.connect(lambda _: self.refresh_rollout())
        self.discard_spin.valueChanged.connect(lambda _: self.refresh_rollout())
        self.main_view.clicked.connect(self._on_image_click)
        self.rollout_view.clicked.connect(self._on_image_click)
        self.main_view.keyMoved.connect(self.move_query)
        self.rollout_view.keyMoved.connect(self.move_query)
        self.grid_view.tileClicked.connect(self._on_tile_click)
        self.model_view_check.toggled.connect(lambda _: self._show_base_image())
        self.main_view.hovered.connect(self._on_hover)
        self.rollout_view.hovered.connect(self._on_hover)
        display.changed.connect(self.refresh)

    # -- state ---------------------------------------------------------------------------------
    def set_analysis(self, analysis) -> None:
        """Show a new result. Layer, head and query are kept when they still exist."""
        first = self.analysis is None
        self.analysis = analysis
        L, H = analysis.num_layers, analysis.num_heads
        self.layer = min(self.layer, L - 1) if not first else L - 1
        if not isinstance(self.query, str) and not (
                self.query[0] < analysis.grid.rows and self.query[1] < analysis.grid.cols):
            self.query = "cls"
        with QtCore.QSignalBlocker(self.layer_spin), QtCore.QSignalBlocker(self.head_combo):
            self.layer_spin.setRange(0, L - 1)
            self.layer_spin.setValue(self.layer)
        self.head = fill_head_combo(self.head_combo, H, self.head)
        fill_predictions(self.predictions, analysis)
        for view in (self.main_view, self.rollout_view):
            view.set_crop_shade(analysis.image.size, analysis.grid.transform.visible_rect())
        self._show_base_image()
        self.refresh()

    def _show_base_image(self) -> None:
        """The photo, or the model's own input placed where it came from (same coordinates)."""
        if self.analysis is not None:
            show_base_image((self.main_view, self.rollout_view), self.analysis, self.model_view_check.isChecked())

    def select_query(self, query) -> None:
        self.query = query
        with QtCore.QSignalBlocker(self.cls_button):
            self.cls_button.setChecked(query == "cls")
        self.refresh()

    def move_query(self, d_row: int, d_col: int) -> None:
        if self.analysis is None:
            return
        rows, cols = self.analysis.grid.shape
        r, c = (rows // 2, cols // 2) if self.query == "cls" else self.query
        self.select_query((min(max(r + d_row, 0), rows - 1), min(max(c + d_col, 0), cols - 1)))

    def step_layer(self, delta: int) -> None:
        self.layer_spin.setValue(self.layer_spin.value() + delta)

    def step_head(self, delta: int) -> None:
        i = (self.head_combo.currentIndex() + delta) % max(1, self.head_combo.count())
        self.head_combo.setCurrentIndex(i)

    def toggle_cls(self) -> None:
        self.cls_button.toggle()

    def toggle_direction(self) -> None:
        self.direction_combo.setCurrentIndex(1 - self.direction_combo.currentIndex())

    # -- handlers ------------------------------------------------------------------------------
    def _on_layer_change(self, value: int) -> None:
        self.layer = value
        self.refresh_attention()

    def _on_head_change(self, index: int) -> None:
        data = self.head_combo.itemData(index)
        if data is not None:
            self.head = data
            self.refresh_attention()

    def _on_cls_toggle(self, checked: bool) -> None:
        if checked:
            self.select_query("cls")
        elif self.query == "cls" and self.analysis is not None:
            rows, cols = self.analysis.grid.shape
            self.select_query((rows // 2, cols // 2))

    def _on_direction_change(self, index: int) -> None:
        self.direction = self.direction_combo.itemData(index)
        self.refresh()

    def _on_image_click(self, x: float, y: float) -> None:
        if self.analysis is None:
            return
        token = self.analysis.grid.token_at(x, y)
        if token is None:
            self.statusMessage.emit(miss_message(self.analysis, x, y))
            return
        self.select_query(token)

    def _on_hover(self, x: float, y: float) -> None:
        """Status line: which patch is under the cursor and its value in both maps."""
        a = self.analysis
        token = a.grid.token_at(x, y) if a is not None else None
        if token is None:
            return
        r, c = token
        att = self.current_map()[r, c]
        roll = a.rollout(self.rollout_fusion.currentText(), self.discard_spin.value(), self.query)[r, c]
        self.statusMessage.emit(f"patch (row {r}, col {c}) · attention {att:.4g} · rollout {roll:.4g}")

    def toggle_model_view(self) -> None:
        self.model_view_check.toggle()

    def _on_tile_click(self, layer: int, head: int) -> None:
        with QtCore.QSignalBlocker(self.layer_spin), QtCore.QSignalBlocker(self.head_combo):
            self.layer_spin.setValue(layer)
            self.head_combo.setCurrentIndex(self.head_combo.findData(head))
        self.layer, self.head = layer, head
        self.refresh_attention()

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.analysis is None:
            return
        a, d = self.analysis, self.display
        xs, ys = a.grid.edges()
        sel = None if self.query == "cls" else a.grid.rect(*self.query)
        if self._lines_for is None or self._lines_for[0] is not a or self._lines_for[1] != d.show_grid:
            for view in (self.main_view, self.rollout_view):
                view.set_grid(xs, ys, d.show_grid)
            self._lines_for = (a, d.show_grid)
        for view in (self.main_view, self.rollout_view):
            view.set_selection(sel)
        self.query_label.setText("query: CLS" if self.query == "cls" else
                                 f"query: patch (row {self.query[0]}, col {self.query[1]})")
        self.refresh_attention()
        self.refresh_rollout()

    def current_map(self) -> np.ndarray:
        return self.analysis.attention_map(self.layer, self.head, self.query, self.direction)

    def refresh_attention(self) -> None:
        """Main map and the heads x layers grid: a few ms (no inference, just indexing)."""
        if self.analysis is None:
            return
        a, d = self.analysis, self.display
        self.main_view.set_map(self.current_map(), a.grid.extent(), d.colormap, opacity=d.opacity)
        head = f"head {self.head}" if isinstance(self.head, int) else f"heads {self.head}"
        q = "CLS" if self.query == "cls" else f"patch {self.query}"
        self.main_view.set_title(f"Attention {self.direction} {q} · layer {self.layer} · {head}")
        shown = self._grid_for  # a layer or head switch leaves the grid's tiles as they are
        if shown is None or shown[0] is not a or shown[1:] != (self.query, self.direction, d.colormap):
            self.grid_view.set_maps(a.head_maps(self.query, self.direction), d.colormap)
            self._grid_for = (a, self.query, self.direction, d.colormap)
        self.grid_view.set_selected(self.layer, self.head if isinstance(self.head, int) else None)

    def refresh_rollout(self) -> None:
        if self.analysis is None:
            return
        a, d = self.analysis, self.display
        fusion = self.rollout_fusion.currentText()
        ratio = self.discard_spin.value()
        m = a.rollout(fusion, ratio, self.query)
        self.rollout_view.set_map(m, a.grid.extent(), d.colormap, opacity=d.opacity)
        q = "CLS" if self.query == "cls" else f"patch {self.query}"
        self.rollout_view.set_title(f"Rollout for {q} · {fusion} · discard {ratio:.2f}")

    def view_settings(self) -> dict:
        """What is shown, for captions, sidecars and reproducing a figure."""
        return {"family": "vit", "layer": self.layer, "head": self.head,
                "query": self.query if self.query == "cls" else list(self.query),
                "direction": self.direction, "rollout_fusion": self.rollout_fusion.currentText(),
                "discard_ratio": self.discard_spin.value(), **self.display.settings()}

    # -- export --------------------------------------------------------------------------------
    def export_sources(self, settings: dict | None = None):
        """What this panel can export (vitviz.gui.export), for view_settings() updated with
        `settings` (None: what is on screen). Views: "attention", "rollout", "grid" (every layer x
        head), and "head:H" (each head of the current layer)."""
        from ..colormaps import COLORMAPS
        from ..export import (ExportError, ExportSources, MapView, TileGrid, crop_shade, grid_lines,
                              parse_head, selection_rect)

        a = self.analysis
        if a is None:
            raise ExportError("Nothing to export: no image has been analysed yet")
        s = {"model_view": self.model_view_check.isChecked(), **self.view_settings(), **(settings or {})}
        L, H = a.num_layers, a.num_heads
        layer = int(s["layer"])
        layer = layer + L if layer < 0 else layer
        if not 0 <= layer < L:
            raise ExportError(f"layer {s['layer']} is out of range (the model has {L} layers: 0..{L - 1})")
        head = parse_head(s["head"], H)
        query = s["query"]
        query = "cls" if isinstance(query, str) and query.lower() == "cls" else tuple(int(v) for v in query)
        try:
            a.token_index(query)
        except (IndexError, ValueError) as exc:
            raise ExportError(f"query: {exc}") from None
        if s["direction"] not in ("from", "to"):
            raise ExportError(f"direction must be 'from' or 'to', not {s['direction']!r}")
        if s["rollout_fusion"] not in FUSIONS:
            raise ExportError(f"rollout fusion must be one of {', '.join(FUSIONS)}")
        if not 0.0 <= float(s["discard_ratio"]) < 1.0:
            raise ExportError(f"the rollout discard ratio must be in [0, 1), not {s['discard_ratio']}")
        if s["colormap"] not in COLORMAPS:
            raise ExportError(f"unknown colormap {s['colormap']!r}; choose one of {', '.join(COLORMAPS)}")
        s.update(layer=layer, head=head, query=query if query == "cls" else list(query),
                 discard_ratio=float(s["discard_ratio"]), opacity=float(s["opacity"]),
                 grid=bool(s["grid"]), model_view=bool(s["model_view"]))
        direction, fusion, ratio = s["direction"], s["rollout_fusion"], s["discard_ratio"]

        q = "CLS" if query == "cls" else f"patch {query}"
        q_long = "the CLS token" if query == "cls" else f"patch (row {query[0]}, col {query[1]})"
        how = "where it looks" if direction == "from" else "how much each patch attends to it"
        shapes = [crop_shade(a.grid.transform.visible_rect())]
        if s["grid"]:
            shapes.append(grid_lines(*a.grid.edges()))
        if query != "cls":
            shapes.append(selection_rect(a.grid.rect(*query)))
        vr = self.main_view.vb.viewRect()
        base = dict(image=np.asarray(a.image), extent=a.grid.extent(), opacity=s["opacity"], shapes=shapes,
                    view_rect=(vr.left(), vr.top(), vr.right(), vr.bottom()))
        seen = ""
        if s["model_view"]:
            base.update(image=a.input_image(), image_rect=a.grid.extent())
            seen = " Drawn over the model's input (resized, cropped, de-normalised)."
        common = {"query": s["query"], "direction": direction}

        def attention(h, title):
            return MapView(title, f"Raw attention {direction} {q_long} ({how}), layer {layer}, "
                                  f"{f'head {h}' if isinstance(h, int) else f'{h} over {H} heads'}.{seen}",
                           values=a.attention_map(layer, h, query, direction),
                           meta={"method": "attention", "layer": layer, "head": h, **common}, **base)

        views = {"attention": attention(head, f"Attention {direction} {q} · layer {layer} · "
                                              + (f"head {head}" if isinstance(head, int) else f"heads {head}"))}
        views["rollout"] = MapView(
            f"Rollout for {q} · {fusion} · discard {ratio:.2f}",
            f"Attention rollout through all {L} layers for {q_long} (heads fused by {fusion}, "
            f"{ratio:.0%} weakest links dropped per layer, residual added).{seen}",
            values=a.rollout(fusion, ratio, query), value_label="rollout",
            meta={"method": "rollout", "head_fusion": fusion, "discard_ratio": ratio, "query": s["query"]}, **base)
        x0, y0, x1, y1 = a.grid.extent()
        views["grid"] = TileGrid(
            f"Attention {direction} {q} · every layer × head",
            f"Raw attention {direction} {q_long} ({how}) for every layer and head",
            a.head_maps(query, direction), "layer", "head",
            selected=(layer, head if isinstance(head, int) else None), tile_aspect=(x1 - x0) / (y1 - y0),
            meta={"method": "attention per head", **common})
        for h in range(H):
            views[f"head:{h}"] = attention(h, f"Layer {layer} · head {h}")
        focus = {self.rollout_view: "rollout", self.grid_view: "grid"}
        current = next((name for w, name in focus.items() if w.hasFocus()), "attention")
        return ExportSources(views, s, colormap=s["colormap"], current=current)
