"""The ViT workspace: attention of the selected patch, a method beside it (rollout by default), the
heads x layers grid, top-5 predictions. State, shared controls and export: vitviz.gui.panel."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...core.vit.figures import attention_title, method_kwargs, method_title
from ..panel import Panel
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .panel_common import arrange_panel, miss_message, show_base_image


class ViTPanel(Panel):
    """Holds a ViTAnalysis and its ViTState (layer, head, query, direction, method)."""

    family = "vit"

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(display, parent)
        # what the token-grid lines and the heads x layers grid were last drawn for: redrawing
        # them when that has not changed cost a third of a layer/head switch (vitviz bench)
        self._lines_for: tuple | None = None
        self._grid_for: tuple | None = None

        self.main_view = ImageView("Attention")
        self.method_view = ImageView("Rollout")
        self.method_view.link_to(self.main_view)
        self.rollout_view = self.method_view  # the name of the seed's second view
        self.grid_view = HeadGridView("layer", "head")

        self.layer_spin = QtWidgets.QSpinBox()
        self.layer_spin.setToolTip("Layer (Page Up / Page Down)")
        self.cls_button = QtWidgets.QPushButton("CLS query")
        self.cls_button.setCheckable(True)
        self.cls_button.setChecked(True)
        self.cls_button.setToolTip("Show the class token's attention (C). Click a patch to query it.")
        self.query_label = QtWidgets.QLabel("query: CLS")

        form = QtWidgets.QFormLayout()
        form.addRow("Layer", self.layer_spin)
        form.addRow("Head", self.head_combo)
        form.addRow(self.cls_button, self.query_label)
        form.addRow("Direction", self.direction_combo)
        form.addRow(self.model_view_check)
        form.addRow(QtWidgets.QLabel("<b>Beside the attention</b>"))
        form.addRow("Method", self.method_combo)
        form.addRow(self.method_form)
        form.addRow(QtWidgets.QLabel("<b>Top-5 predictions</b>"))
        form.addRow(self.predictions)

        # Attention and the method's map stacked at equal size: linked views need the same shape to
        # show the same region; the heads x layers grid gets the other half.
        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(self.main_view)
        left.addWidget(self.method_view)
        views = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        views.addWidget(left)
        views.addWidget(self.grid_view)
        views.setSizes([520, 560])
        arrange_panel(self, form, views, display)

        self.layer_spin.valueChanged.connect(self._on_layer_change)
        self.cls_button.toggled.connect(self._on_cls_toggle)
        for view in (self.main_view, self.method_view):
            view.clicked.connect(self._on_image_click)
            view.keyMoved.connect(self.move_query)
        self.watch_pointer(self.main_view, self.method_view)
        self.grid_view.tileClicked.connect(self._on_tile_click)

    # -- state as the tests and the window read it ---------------------------------------------
    @property
    def layer(self) -> int:
        return self.state.layer

    @property
    def head(self):
        return self.state.head

    @property
    def query(self):
        return self.state.query

    @property
    def direction(self) -> str:
        return self.state.direction

    def sync_controls(self) -> None:
        super().sync_controls()
        s = self.state
        with QtCore.QSignalBlocker(self.layer_spin):
            self.layer_spin.setValue(s.layer if s.layer >= 0 else self.layer_spin.maximum() + 1 + s.layer)
        with QtCore.QSignalBlocker(self.cls_button):
            self.cls_button.setChecked(s.query == "cls")
        self.query_label.setText("query: CLS" if s.query == "cls" else
                                 f"query: patch (row {s.query[0]}, col {s.query[1]})")

    def on_new_analysis(self) -> None:
        a = self.analysis
        with QtCore.QSignalBlocker(self.layer_spin):
            self.layer_spin.setRange(0, a.num_layers - 1)
            self.layer_spin.setValue(self.state.layer)
        for view in (self.main_view, self.method_view):
            view.set_crop_shade(a.image.size, a.grid.transform.visible_rect())
        self._show_base_image()

    def on_state_change(self, old, new) -> None:
        if (old.model_view != new.model_view):
            self._show_base_image()
        if (old.query, old.direction, old.colormap, old.opacity, old.overlay, old.grid) != \
                (new.query, new.direction, new.colormap, new.opacity, new.overlay, new.grid):
            self.refresh()
            return
        if (old.layer, old.head) != (new.layer, new.head):
            self.refresh_attention()
        # the method's map depends on its parameters and on the context it takes (raw attention
        # takes the layer and head: the soak found its view left on the previous layer's map)
        uses_layer = {"layer", "head"} & set(new.method_decl().context)
        if (old.method, old.method_params) != (new.method, new.method_params) or (
                uses_layer and (old.layer, old.head) != (new.layer, new.head)):
            self.refresh_method()

    # -- commands --------------------------------------------------------------------------------
    def select_query(self, query) -> None:
        self.update_state(query=query if query == "cls" else tuple(int(v) for v in query))

    def move_query(self, d_row: int, d_col: int) -> None:
        if self.analysis is None:
            return
        rows, cols = self.analysis.grid.shape
        r, c = (rows // 2, cols // 2) if self.query == "cls" else self.query
        self.select_query((min(max(r + d_row, 0), rows - 1), min(max(c + d_col, 0), cols - 1)))

    def step_layer(self, delta: int) -> None:
        self.layer_spin.setValue(self.layer_spin.value() + delta)

    def toggle_cls(self) -> None:
        self.cls_button.toggle()

    # -- handlers ------------------------------------------------------------------------------
    def _on_layer_change(self, value: int) -> None:
        self.update_state(layer=value)

    def _on_cls_toggle(self, checked: bool) -> None:
        if checked:
            self.select_query("cls")
        elif self.query == "cls" and self.analysis is not None:
            rows, cols = self.analysis.grid.shape
            self.select_query((rows // 2, cols // 2))

    def _on_image_click(self, x: float, y: float) -> None:
        if self.analysis is None:
            return
        token = self.analysis.grid.token_at(x, y)
        if token is None:
            self.statusMessage.emit(miss_message(self.analysis, x, y))
            return
        self.select_query(token)

    def readout(self, x: float, y: float) -> str | None:
        """Which patch is under the cursor and its value in both maps."""
        token = self.analysis.grid.token_at(x, y)
        if token is None:
            return None
        r, c = token
        att = self.current_map()[r, c]
        try:
            other = self.current_method_map()
        except ValueError:
            other = None
        shown = "computing…" if other is None else f"{other[r, c]:.4g}"
        return f"patch (row {r}, col {c}) · attention {att:.4g} · {self.state.method} {shown}"

    def _on_tile_click(self, layer: int, head: int) -> None:
        self.update_state(layer=layer, head=head)

    # -- drawing -------------------------------------------------------------------------------
    def _show_base_image(self) -> None:
        """The photo, or the model's own input placed where it came from (same coordinates)."""
        if self.analysis is not None:
            show_base_image((self.main_view, self.method_view), self.analysis, self.state.model_view)

    def refresh(self) -> None:
        if self.analysis is None:
            return
        a, s = self.analysis, self.state
        if self._lines_for is None or self._lines_for[0] is not a or self._lines_for[1] != s.grid:
            xs, ys = a.grid.edges()
            for view in (self.main_view, self.method_view):
                view.set_grid(xs, ys, s.grid)
            self._lines_for = (a, s.grid)
        sel = None if s.query == "cls" else a.grid.rect(*s.query)
        for view in (self.main_view, self.method_view):
            view.set_selection(sel)
        self.refresh_attention()
        self.refresh_method()

    def current_map(self) -> np.ndarray:
        s = self.state
        return self.analysis.attention_map(s.layer, s.head, s.query, s.direction)

    def current_method_map(self) -> np.ndarray | None:
        """The method's map; None while the worker computes a gradient method's (a backward pass)."""
        method = self.state.method_decl()
        return self.compute_method_map(method, method_kwargs(self.state, method))

    def refresh_attention(self) -> None:
        """Main map and the heads x layers grid: a few ms (no inference, just indexing)."""
        if self.analysis is None:
            return
        a, s = self.analysis, self.state
        self.main_view.set_map(self.current_map(), a.grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay)
        self.main_view.set_title(attention_title(s))
        shown = self._grid_for  # a layer or head switch leaves the grid's tiles as they are
        if shown is None or shown[0] is not a or shown[1:] != (s.query, s.direction, s.colormap):
            self.grid_view.set_maps(a.head_maps(s.query, s.direction), s.colormap)
            self._grid_for = (a, s.query, s.direction, s.colormap)
        self.grid_view.set_selected(s.layer, s.head if isinstance(s.head, int) else None)

    def refresh_method(self) -> None:
        if self.analysis is None:
            return
        a, s = self.analysis, self.state
        method = s.method_decl()
        params = method.resolve(s.params)
        title = method_title(method, params, s.query)
        if self.method_form.text_targets and method.needs_grad and params.get("target") == -1:
            self.method_view.set_map(None)  # a CLIP model explains a prompt: none typed yet
            self.method_view.set_title(f"{title} · type a prompt, then Enter")
            return
        self.draw_method_map(self.method_view, title, method, params, lambda values: self.method_view.set_map(
            values, a.grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay))

    def on_method_map_ready(self) -> None:
        self.refresh_method()

    refresh_rollout = refresh_method  # the seed's name, used by the benchmark

    def focused_view(self) -> str:
        focus = {self.method_view: "method", self.grid_view: "grid"}
        return next((name for w, name in focus.items() if w.hasFocus()), "attention")
