"""The Swin workspace: window attention of a clicked token at its true image positions, the block's
window partition (regular or cyclically shifted) with the shifted-window mask's nine regions, the
stage's token grid, a blocks x heads grid, the relative position bias, patch merging followed
through the stages, the attention summary, the top-5 predictions, and a method view below the
attention: relevance for the top-1 class by default (a class clicked in the top-5 list becomes its
target), computed in the worker thread, the previous map kept while it runs.

Stages and blocks count from 0 (the paper's "stage 1" is stage 0), as ViT layers do. The selection
is a point of the original image, so it survives stage changes: at each stage it selects the token
holding it (the one patch merging carried it into). The view state is a SwinState
(vitviz.core.swin.state); shared controls, state handling and export: vitviz.gui.panel.
Keys: Page Up/Down step blocks (through the stages), [ and ] heads, arrows move the token, D from/to,
C the attention summary, M what the model sees, G the token grid.
"""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...core.analysis.heads import FUSIONS
from ...core.swin.figures import attention_title, method_grid, method_kwargs, method_title, summary_head, \
    summary_title, takes_token
from ...core.swin.marks import PARTITIONS, REGION_COLORS, REGULAR_COLOR, SHIFTED_COLOR, crop_to_window, \
    token_rect, window_marks
from ...core.swin.state import token_centre
from ..panel import Panel
from .bias_view import BiasView
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .merge_view import MergeView
from .panel_common import arrange_panel, fill_head_combo, miss_message, show_base_image
from .windows_overlay import WindowsOverlay


def _legend() -> QtWidgets.QLabel:
    def swatch(color: str, glyph: str) -> str:
        return (f"<span style='color:{color}; background:#202124; font-size:large'>"
                f"&nbsp;{glyph}&nbsp;</span>&nbsp;")

    label = QtWidgets.QLabel(
        f"{swatch(REGULAR_COLOR, '━━')}regular windows (even blocks)<br>"
        f"{swatch(SHIFTED_COLOR, '━━')}shifted windows (odd blocks)<br>"
        f"{swatch('#ffffff', '▢')}the token's window, every piece<br>"
        f"{swatch(REGION_COLORS[1], '▨')}mask regions: tokens of one window in different regions "
        "do not attend to each other")
    label.setWordWrap(True)
    return label


def _splitter(orientation, widgets, sizes) -> QtWidgets.QSplitter:
    split = QtWidgets.QSplitter(orientation)
    for w in widgets:
        split.addWidget(w)
    split.setSizes(list(sizes))
    return split


class SwinPanel(Panel):
    """Holds a SwinAnalysis and its SwinState (stage, block, head, point, direction, overlays)."""

    family = "swin"

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(display, parent)
        self.main_view = ImageView("Window attention")
        # ColorBarItem fixes its axis at 45 px and drops labels wider than that: near-uniform
        # window attention (1/49 = 0.0204...) needs "0.0205"
        self.main_view.colorbar.axis.setWidth(None)
        self.overlay = WindowsOverlay(self.main_view.vb)
        self.method_view = ImageView("Relevance")
        self.method_view.colorbar.axis.setWidth(None)
        self.method_view.link_to(self.main_view)
        self.grid_view = HeadGridView("block", "head")
        self.bias_view = BiasView()
        self.merge_view = MergeView()

        self.stage_spin = QtWidgets.QSpinBox()
        self.stage_spin.setToolTip("Stage, counted from 0: stage 0 is the paper's stage 1")
        self.block_spin = QtWidgets.QSpinBox()
        self.block_spin.setToolTip("Block within the stage: even blocks use regular windows, odd blocks "
                                   "shifted ones (Page Up / Page Down step through all stages)")
        self.info_label = QtWidgets.QLabel()
        self.info_label.setWordWrap(True)
        self.direction_combo.setItemText(0, "from token (where it looks)")
        self.direction_combo.setItemText(1, "to token (who looks at it)")
        self.direction_combo.setToolTip("Row or column of the window's attention matrix (D)")
        self.partition_combo = QtWidgets.QComboBox()
        for key, text in PARTITIONS:
            self.partition_combo.addItem(text, key)
        self.partition_combo.setToolTip("Which window partition to draw: the block's own, or the stage's "
                                        "regular / shifted one to compare")
        self.regions_check = QtWidgets.QCheckBox("Mask regions (shifted windows)")
        self.regions_check.setChecked(self.state.regions)
        self.regions_check.setToolTip("The nine regions torchvision labels to build the shifted-window "
                                      "mask: after the cyclic shift, a window at the border holds pieces "
                                      "from opposite sides that must not attend to each other")
        self.summary_check = QtWidgets.QCheckBox("Attention summary (C)")
        self.summary_check.setToolTip("Where the model looks: the attention each token of the last stage "
                                      "receives, averaged over its blocks and queries")
        self.token_label = QtWidgets.QLabel()
        self.token_label.setWordWrap(True)

        form = QtWidgets.QFormLayout()
        for row in (("Stage", self.stage_spin), ("Block", self.block_spin), (self.info_label,),
                    ("Head", self.head_combo), ("Direction", self.direction_combo), (self.token_label,),
                    (QtWidgets.QLabel("<b>Windows</b>"),), ("Partition", self.partition_combo),
                    (self.regions_check,), (_legend(),), (self.summary_check,), (self.model_view_check,),
                    (QtWidgets.QLabel("<b>Below the attention</b>"),), ("Method", self.method_combo),
                    (self.method_form,),
                    (QtWidgets.QLabel("<b>Top-5 predictions</b> (click: the target)"),), (self.predictions,)):
            form.addRow(*row)
        right = _splitter(QtCore.Qt.Orientation.Vertical, (self.grid_view, self.bias_view, self.merge_view),
                          (340, 190, 300))
        # the attention and the method's map stacked at equal size (linked views show one region)
        left = _splitter(QtCore.Qt.Orientation.Vertical, (self.main_view, self.method_view), (400, 400))
        views = _splitter(QtCore.Qt.Orientation.Horizontal, (left, right), (600, 500))
        arrange_panel(self, form, views)

        self.stage_spin.valueChanged.connect(self._on_stage_change)
        self.block_spin.valueChanged.connect(self._on_block_change)
        self.partition_combo.currentIndexChanged.connect(self._on_partition_change)
        self.regions_check.toggled.connect(self._on_regions_change)
        self.summary_check.toggled.connect(self._on_summary_change)
        for view in (self.main_view, self.method_view):
            view.clicked.connect(self._on_image_click)
            view.keyMoved.connect(self.move_token)
        self.merge_view.clicked.connect(self._on_image_click)
        self.watch_pointer(self.main_view, self.method_view)
        self.grid_view.tileClicked.connect(self._on_tile_click)
        self.bias_view.tileClicked.connect(self._on_bias_click)
        self.bias_view.hoveredValue.connect(self.statusMessage)

    # -- state as the tests and the window read it ---------------------------------------------
    stage = property(lambda self: self.state.stage)
    block = property(lambda self: self.state.block)
    head = property(lambda self: self.state.head)
    direction = property(lambda self: self.state.direction)
    point = property(lambda self: self.state.point, doc="The selection, original-image pixels.")

    @property
    def token(self) -> tuple[int, int] | None:
        """The token of the current stage holding the selected point."""
        if self.analysis is None or self.point is None:
            return None
        return self.analysis.stage_grid(self.stage).token_at(*self.point)

    def set_state(self, state) -> None:
        """As Panel.set_state, with the derived token kept in step with the point and stage."""
        if self.analysis is not None and state.point is not None:
            state = state.replace(token=self.analysis.stage_grid(state.stage).token_at(*state.point))
        super().set_state(state)

    def num_heads(self) -> int:
        return self.analysis.block(self.state.carried_over(self.analysis).stage, 0).heads

    def sync_controls(self) -> None:
        a, s = self.analysis, self.state
        if a is not None:
            heads = a.block(s.stage, 0).heads
            if self.head_combo.count() != len(FUSIONS) + heads:  # another stage's heads
                fill_head_combo(self.head_combo, heads, s.head)
        super().sync_controls()
        with QtCore.QSignalBlocker(self.stage_spin), QtCore.QSignalBlocker(self.block_spin):
            if a is not None:
                self.stage_spin.setRange(0, a.num_stages - 1)
                self.block_spin.setRange(0, a.num_blocks(s.stage) - 1)
            self.stage_spin.setValue(s.stage)
            self.block_spin.setValue(s.block)
        with QtCore.QSignalBlocker(self.partition_combo):
            self.partition_combo.setCurrentIndex(self.partition_combo.findData(s.partition))
        for check, value in ((self.regions_check, s.regions), (self.summary_check, s.summary)):
            with QtCore.QSignalBlocker(check):
                check.setChecked(bool(value))

    def on_new_analysis(self) -> None:
        a = self.analysis
        for view in (self.main_view, self.method_view):
            view.set_crop_shade(a.image.size, a.grid.transform.visible_rect())
        self.merge_view.set_analysis(a, self.state.model_view)
        self._show_base_image()

    def on_state_change(self, old, new) -> None:
        if old.model_view != new.model_view:
            self._show_base_image()
        if old.replace(method=new.method, method_params=new.method_params) == new:
            self.refresh_method()  # a new target or method: the other views are as they were
            return
        self.refresh()

    def view_settings(self) -> dict:
        """What is shown, for captions, sidecars and reproducing a figure: the state as JSON, with
        the token the point selects."""
        state = self.state.replace(**self.display.settings())
        if self.analysis is not None:
            state = state.resolved(self.analysis)
        return state.to_json()

    # -- commands ------------------------------------------------------------------------------
    def _select(self, stage: int | None = None, block: int | None = None, head=None) -> None:
        """Change stage / block / head together (a stage keeps the block and head where it has
        them, else its last block and fused heads), controls kept in step, one redraw."""
        if self.analysis is None:
            return
        changes = {k: v for k, v in (("stage", stage), ("block", block), ("head", head)) if v is not None}
        self.set_state(self.state.replace(**changes).carried_over(self.analysis))

    def select_point(self, x: float, y: float) -> None:
        self.update_state(point=(float(x), float(y)))

    def select_token(self, row: int, col: int) -> None:
        """Select token (row, col) of the current stage (through the centre of its visible part)."""
        self.select_point(*token_centre(self.analysis, self.stage, row, col))

    def move_token(self, d_row: int, d_col: int) -> None:
        if self.token is None:
            return
        rows, cols = self.analysis.stage_grid(self.stage).shape
        r, c = self.token
        self.select_token(min(max(r + d_row, 0), rows - 1), min(max(c + d_col, 0), cols - 1))

    def step_layer(self, delta: int) -> None:
        """Next / previous block, through the stages."""
        a = self.analysis
        if a is None:
            return
        i = a.block(self.stage, self.block).index
        b = a.blocks[min(max(i + delta, 0), len(a.blocks) - 1)]
        self._select(stage=b.stage, block=b.block)

    def toggle_cls(self) -> None:
        """Swin has no class token: C shows the global picture, the attention summary."""
        self.summary_check.toggle()

    # -- handlers ------------------------------------------------------------------------------
    def _on_stage_change(self, value: int) -> None:
        self._select(stage=value)

    def _on_block_change(self, value: int) -> None:
        self._select(block=value)

    def _on_tile_click(self, block: int, head: int) -> None:
        self._select(block=block, head=head)

    def _on_bias_click(self, head: int) -> None:
        self._select(head=head)

    def _on_partition_change(self, index: int) -> None:
        self.update_state(partition=self.partition_combo.itemData(index))

    def _on_regions_change(self, checked: bool) -> None:
        self.update_state(regions=checked)

    def _on_summary_change(self, checked: bool) -> None:
        self.update_state(summary=checked)

    def _on_image_click(self, x: float, y: float) -> None:
        if self.analysis is None:
            return
        if self.analysis.stage_grid(self.stage).token_at(x, y) is None:
            self.statusMessage.emit(miss_message(self.analysis, x, y, "token"))
            return
        self.select_point(x, y)

    def readout(self, x: float, y: float) -> str | None:
        a, s = self.analysis, self.state
        stage = a.num_stages - 1 if s.summary else s.stage
        token = a.stage_grid(stage).token_at(x, y)
        if token is None:
            return None
        r, c = token
        text = f"stage {stage} token (row {r}, col {c})"
        if s.summary:
            text += f" · attention received {self.current_map()[r, c]:.4g}"
        else:
            slot = a.window_of(stage, s.block, r, c)
            text += f" · window {slot.window} (slot {slot.row}, {slot.col})"
            if a.block(stage, s.block).shifted:
                text += f" · mask region {a.mask_regions(stage, s.block)[r, c]}"
            v = self.current_map()[r, c]
            text += " · outside the selected token's window" if np.isnan(v) else f" · attention {v:.4g}"
        return text + self._method_readout(x, y)

    def _method_readout(self, x: float, y: float) -> str:
        """' · relevance 0.0123 (stage-0 token (r, c))' for the method's map under the pointer."""
        try:
            values = self.current_method_map()
        except ValueError:
            return ""
        if values is None:
            return f" · {self.state.method} computing…"
        grid = method_grid(self.analysis, values, self.state.stage)
        token = grid.token_at(x, y)
        if token is None:
            return ""
        v = values[token]
        return "" if np.isnan(v) else f" · {self.state.method} {v:.4g}"

    # -- drawing -------------------------------------------------------------------------------
    def _show_base_image(self) -> None:
        if self.analysis is not None:
            show_base_image([self.main_view, self.method_view, self.merge_view.view], self.analysis,
                            self.state.model_view)

    def current_map(self) -> np.ndarray:
        """What the main view shows: the selected token's window attention, or the summary."""
        a, s = self.analysis, self.state
        if s.summary:
            return a.attention_summary(-1, summary_head(a, s.head))
        return a.attention_map(s.stage, s.block, s.head, self.token, s.direction)

    def refresh(self) -> None:
        a, s = self.analysis, self.state
        if a is None:
            return
        self._refresh_labels()
        self._refresh_main()
        self.refresh_method()
        self._refresh_heads()
        b = a.block(s.stage, s.block)
        self.bias_view.set_bias(a.relative_position_bias(s.stage, s.block), s.colormap,
                                f"Relative position bias · {b.window[0]}×{b.window[1]} window")
        self.bias_view.set_selected(s.head if isinstance(s.head, int) else None)
        self.merge_view.set_trace(a, s.point, s.stage)

    def _refresh_labels(self) -> None:
        a, s = self.analysis, self.state
        g, b = a.stage_grid(s.stage), a.block(s.stage, s.block)
        (mh, mw), (sh, sw) = b.window, b.shift
        if b.shifted:
            kind = f"shifted windows (SW-MSA), shift ({sh}, {sw})"
        elif sum(b.configured_shift):
            kind = "regular windows: the shift is dropped, one window covers the map"
        else:
            kind = "regular windows (W-MSA)"
        self.info_label.setText(
            f"Stage {s.stage} of 0–{a.num_stages - 1} (the paper's stage {s.stage + 1}): {g.rows}×{g.cols} "
            f"tokens of {g.cell_w:g}×{g.cell_h:g} input px · {b.heads} heads · {a.num_blocks(s.stage)} blocks<br>"
            f"Block {s.block}: {kind} · {mh}×{mw}-token windows · {b.num_windows} windows"
            + (f" · padded by {b.padding}" if any(b.padding) else ""))
        t = self.token
        if t is None:
            self.token_label.setText("Click the image to select a token.")
        else:
            slot = a.window_of(s.stage, s.block, *t)
            self.token_label.setText(f"token (row {t[0]}, col {t[1]}) · window {slot.window}, "
                                     f"slot ({slot.row}, {slot.col})")

    def _refresh_main(self) -> None:
        a, s, view = self.analysis, self.state, self.main_view
        stage = a.num_stages - 1 if s.summary else s.stage
        grid = a.stage_grid(stage)
        xs, ys = grid.edges()
        view.set_grid(xs, ys, s.grid)
        t = self.token
        if s.summary or t is None:
            self.overlay.clear()
            view.set_selection(None)
            if not s.summary:
                view.set_map(None)
                view.set_title(f"Stage {s.stage} · block {s.block} · click the image to select a token")
                return
            view.set_map(self.current_map(), grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay)
            view.set_title(summary_title(a, s.head))
            return
        parts, regions = window_marks(a, s.stage, s.block, s.partition, s.regions)
        self.overlay.set_partitions(*parts)
        self.overlay.set_regions(regions)
        self.overlay.set_window([token_rect(r, xs, ys) for r in a.window_rects(s.stage, s.block, *t)])
        view.set_selection(grid.rect(*t))
        view.set_map(self.current_map(), grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay)
        view.set_title(attention_title(s.replace(token=t)))

    def _refresh_heads(self) -> None:
        a, s, t = self.analysis, self.state, self.token
        if t is None:
            return
        maps = crop_to_window(a.head_maps(s.stage, t, s.direction))
        self.grid_view.set_maps(maps, s.colormap, row_labels=[f"B{i}" for i in range(len(maps))])
        self.grid_view.plot.vb.enableAutoRange()  # fit the tiles after layout changes too
        self.grid_view.set_selected(s.block, s.head if isinstance(s.head, int) else None)

    # -- the method view ---------------------------------------------------------------------------
    def current_method_map(self) -> np.ndarray | None:
        """The method's map; None while the worker computes a gradient method's (a backward pass)."""
        s = self.state.replace(token=self.token)
        method = s.method_decl()
        if s.token is None and takes_token(method):
            raise ValueError("click the image to select a token")
        return self.compute_method_map(method, method_kwargs(s, method))

    def refresh_method(self) -> None:
        a = self.analysis
        if a is None:
            return
        s = self.state.replace(token=self.token or (0, 0))
        view = self.method_view
        method = s.method_decl()
        params = method.resolve(s.params)
        title = method_title(method, params, s)

        def draw(values):
            grid = method_grid(a, values, s.stage)
            view.set_grid(*grid.edges(), s.grid)
            view.set_selection(grid.rect(*self.token) if takes_token(method) and self.token else None)
            view.set_map(values, grid.extent(), s.colormap, opacity=s.opacity, overlay=s.overlay)

        self.draw_method_map(view, title, method, params, draw)

    def on_method_map_ready(self) -> None:
        self.refresh_method()

    def focused_view(self) -> str:
        focus = {self.grid_view: "grid", self.bias_view: "bias", self.method_view: "method"}
        return next((name for w, name in focus.items() if w.hasFocus()),
                    "summary" if self.state.summary else "attention")
