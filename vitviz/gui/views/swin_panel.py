"""The Swin workspace: window attention of a clicked token at its true image positions, the block's
window partition (regular or cyclically shifted) with the shifted-window mask's nine regions, the
stage's token grid, a blocks x heads grid, the relative position bias, patch merging followed
through the stages, the attention summary and the top-5 predictions.

Stages and blocks count from 0 (the paper's "stage 1" is stage 0), as ViT layers do. The selection
is a point of the original image, so it survives stage changes: at each stage it selects the token
holding that point (the one patch merging carried it into).
Keys: Page Up/Down step blocks (through the stages), [ and ] heads, arrows move the token, D from/to,
C the attention summary, M what the model sees, G the token grid.
"""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from .bias_view import BiasView
from .controls import DisplayControls
from .head_grid import HeadGridView
from .image_view import ImageView
from .merge_view import MergeView
from .panel_common import (arrange_panel, fill_head_combo, fill_predictions, head_text, miss_message, model_view_check,
                           predictions_list, show_base_image)
from .windows_overlay import (REGION_COLORS, REGULAR_COLOR, SHIFTED_COLOR, WindowsOverlay, crop_to_window,
                              token_rect, window_marks)

PARTITIONS = (("block", "this block's own"), ("regular", "regular (W-MSA)"), ("shifted", "shifted (SW-MSA)"),
              ("both", "compare: regular + shifted"), ("none", "none"))


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


class SwinPanel(QtWidgets.QWidget):
    """Holds a SwinAnalysis and the view state (stage, block, head, point, direction, overlays)."""

    family = "swin"
    statusMessage = QtCore.Signal(str)

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(parent)
        self.display = display
        self.analysis = None
        self.stage = 0
        self.block = 0
        self.head: int | str = "mean"
        self.direction = "from"
        self.point: tuple[float, float] | None = None  # the selection, original-image pixels

        self.main_view = ImageView("Window attention")
        # ColorBarItem fixes its axis at 45 px and drops labels wider than that: near-uniform
        # window attention (1/49 = 0.0204...) needs "0.0205"
        self.main_view.colorbar.axis.setWidth(None)
        self.overlay = WindowsOverlay(self.main_view.vb)
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
        self.head_combo = QtWidgets.QComboBox()
        self.head_combo.setToolTip("Head, or all heads fused ([ and ])")
        self.direction_combo = QtWidgets.QComboBox()
        self.direction_combo.addItem("from token (where it looks)", "from")
        self.direction_combo.addItem("to token (who looks at it)", "to")
        self.direction_combo.setToolTip("Row or column of the window's attention matrix (D)")
        self.partition_combo = QtWidgets.QComboBox()
        for key, text in PARTITIONS:
            self.partition_combo.addItem(text, key)
        self.partition_combo.setToolTip("Which window partition to draw: the block's own, or the stage's "
                                        "regular / shifted one to compare")
        self.regions_check = QtWidgets.QCheckBox("Mask regions (shifted windows)")
        self.regions_check.setChecked(True)
        self.regions_check.setToolTip("The nine regions torchvision labels to build the shifted-window "
                                      "mask: after the cyclic shift, a window at the border holds pieces "
                                      "from opposite sides that must not attend to each other")
        self.summary_check = QtWidgets.QCheckBox("Attention summary (C)")
        self.summary_check.setToolTip("Where the model looks: the attention each token of the last stage "
                                      "receives, averaged over its blocks and queries")
        self.model_view_check = model_view_check()
        self.token_label = QtWidgets.QLabel()
        self.token_label.setWordWrap(True)
        self.predictions = predictions_list()

        form = QtWidgets.QFormLayout()
        form.addRow("Stage", self.stage_spin)
        form.addRow("Block", self.block_spin)
        form.addRow(self.info_label)
        form.addRow("Head", self.head_combo)
        form.addRow("Direction", self.direction_combo)
        form.addRow(self.token_label)
        form.addRow(QtWidgets.QLabel("<b>Windows</b>"))
        form.addRow("Partition", self.partition_combo)
        form.addRow(self.regions_check)
        form.addRow(_legend())
        form.addRow(self.summary_check)
        form.addRow(self.model_view_check)
        form.addRow(QtWidgets.QLabel("<b>Top-5 predictions</b>"))
        form.addRow(self.predictions)

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.grid_view)
        right.addWidget(self.bias_view)
        right.addWidget(self.merge_view)
        right.setSizes([340, 190, 300])
        views = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        views.addWidget(self.main_view)
        views.addWidget(right)
        views.setSizes([600, 500])
        arrange_panel(self, form, views)

        self.stage_spin.valueChanged.connect(self._on_stage_change)
        self.block_spin.valueChanged.connect(self._on_block_change)
        self.head_combo.currentIndexChanged.connect(self._on_head_change)
        self.direction_combo.currentIndexChanged.connect(self._on_direction_change)
        self.partition_combo.currentIndexChanged.connect(lambda _: self.refresh())
        for w in (self.regions_check, self.summary_check):
            w.toggled.connect(lambda _: self.refresh())
        self.model_view_check.toggled.connect(lambda _: self._show_base_image())
        self.main_view.clicked.connect(self._on_image_click)
        self.merge_view.clicked.connect(self._on_image_click)
        self.main_view.keyMoved.connect(self.move_token)
        self.main_view.hovered.connect(self._on_hover)
        self.grid_view.tileClicked.connect(self._on_tile_click)
        self.bias_view.tileClicked.connect(lambda h: self._select(head=h))
        self.bias_view.hoveredValue.connect(self.statusMessage)
        display.changed.connect(self.refresh)

    # -- state ---------------------------------------------------------------------------------
    def set_analysis(self, analysis) -> None:
        """Show a new result. Stage, block, head and point are kept when they still exist."""
        first = self.analysis is None
        self.analysis = a = analysis
        if first:  # stage 1, shifted block: windows large enough to see, the shift and mask at work
            self.stage, self.block = min(1, a.num_stages - 1), 1
        self.stage = min(self.stage, a.num_stages - 1)
        self.block = min(self.block, a.num_blocks(self.stage) - 1)
        if self.point is None or a.grid.token_at(*self.point) is None:
            vx0, vy0, vx1, vy1 = a.grid.transform.visible_rect()
            x0, y0, x1, y1 = a.grid.rect(*a.grid.token_at((vx0 + vx1) / 2, (vy0 + vy1) / 2))
            self.point = ((x0 + x1) / 2, (y0 + y1) / 2)  # inside a patch, not on its corner
        with QtCore.QSignalBlocker(self.stage_spin), QtCore.QSignalBlocker(self.block_spin):
            self.stage_spin.setRange(0, a.num_stages - 1)
            self.stage_spin.setValue(self.stage)
            self.block_spin.setRange(0, a.num_blocks(self.stage) - 1)
            self.block_spin.setValue(self.block)
        self.head = fill_head_combo(self.head_combo, a.block(self.stage, 0).heads, self.head)
        fill_predictions(self.predictions, a)
        self.main_view.set_crop_shade(a.image.size, a.grid.transform.visible_rect())
        self.merge_view.set_analysis(a, self.model_view_check.isChecked())
        self._show_base_image()

    def _show_base_image(self) -> None:
        if self.analysis is not None:
            show_base_image([self.main_view, self.merge_view.view], self.analysis,
                            self.model_view_check.isChecked())
            self.refresh()

    @property
    def token(self) -> tuple[int, int] | None:
        """The token of the current stage holding the selected point."""
        if self.analysis is None or self.point is None:
            return None
        return self.analysis.stage_grid(self.stage).token_at(*self.point)

    def _select(self, stage: int | None = None, block: int | None = None, head=None) -> None:
        """Change stage / block / head together, controls kept in step, one redraw."""
        a = self.analysis
        if a is None:
            return
        if stage is not None:
            self.stage = stage
            self.block = min(self.block, a.num_blocks(stage) - 1)
            self.head = fill_head_combo(self.head_combo, a.block(stage, 0).heads, self.head)
        if block is not None:
            self.block = block
        if head is not None:
            self.head = head
        with QtCore.QSignalBlocker(self.stage_spin), QtCore.QSignalBlocker(self.block_spin), \
                QtCore.QSignalBlocker(self.head_combo):
            self.stage_spin.setValue(self.stage)
            self.block_spin.setRange(0, a.num_blocks(self.stage) - 1)
            self.block_spin.setValue(self.block)
            self.head_combo.setCurrentIndex(self.head_combo.findData(self.head))
        self.refresh()

    def select_point(self, x: float, y: float) -> None:
        self.point = (float(x), float(y))
        self.refresh()

    def select_token(self, row: int, col: int) -> None:
        """Select token (row, col) of the current stage (through the centre of its visible part)."""
        x0, y0, x1, y1 = self.analysis.stage_grid(self.stage).rect(row, col)
        vx0, vy0, vx1, vy1 = self.analysis.grid.transform.visible_rect()
        self.select_point((max(x0, vx0) + min(x1, vx1)) / 2, (max(y0, vy0) + min(y1, vy1)) / 2)

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

    def step_head(self, delta: int) -> None:
        i = (self.head_combo.currentIndex() + delta) % max(1, self.head_combo.count())
        self.head_combo.setCurrentIndex(i)

    def toggle_cls(self) -> None:
        """Swin has no class token: C shows the global picture, the attention summary."""
        self.summary_check.toggle()

    def toggle_direction(self) -> None:
        self.direction_combo.setCurrentIndex(1 - self.direction_combo.currentIndex())

    def toggle_model_view(self) -> None:
        self.model_view_check.toggle()

    # -- handlers ------------------------------------------------------------------------------
    def _on_stage_change(self, value: int) -> None:
        self._select(stage=value)

    def _on_block_change(self, value: int) -> None:
        self._select(block=value)

    def _on_head_change(self, index: int) -> None:
        data = self.head_combo.itemData(index)
        if data is not None:
            self._select(head=data)

    def _on_direction_change(self, index: int) -> None:
        self.direction = self.direction_combo.itemData(index)
        self.refresh()

    def _on_tile_click(self, block: int, head: int) -> None:
        self._select(block=block, head=head)

    def _on_image_click(self, x: float, y: float) -> None:
        if self.analysis is None:
            return
        if self.analysis.stage_grid(self.stage).token_at(x, y) is None:
            self.statusMessage.emit(miss_message(self.analysis, x, y, "token"))
            return
        self.select_point(x, y)

    def _on_hover(self, x: float, y: float) -> None:
        a = self.analysis
        if a is None:
            return
        stage = a.num_stages - 1 if self.summary_check.isChecked() else self.stage
        token = a.stage_grid(stage).token_at(x, y)
        if token is None:
            return
        r, c = token
        text = f"stage {stage} token (row {r}, col {c})"
        if self.summary_check.isChecked():
            text += f" · attention received {self.current_map()[r, c]:.4g}"
        else:
            slot = a.window_of(stage, self.block, r, c)
            text += f" · window {slot.window} (slot {slot.row}, {slot.col})"
            if a.block(stage, self.block).shifted:
                text += f" · mask region {a.mask_regions(stage, self.block)[r, c]}"
            v = self.current_map()[r, c]
            text += " · outside the selected token's window" if np.isnan(v) else f" · attention {v:.4g}"
        self.statusMessage.emit(text)

    # -- drawing -------------------------------------------------------------------------------
    def current_map(self) -> np.ndarray:
        """What the main view shows: the selected token's window attention, or the summary."""
        a = self.analysis
        if self.summary_check.isChecked():
            return a.attention_summary(-1, self._summary_head())
        return a.attention_map(self.stage, self.block, self.head, self.token, self.direction)

    def _summary_head(self):
        heads = self.analysis.blocks[-1].heads
        return self.head if not isinstance(self.head, int) or self.head < heads else "mean"

    def refresh(self) -> None:
        a = self.analysis
        if a is None:
            return
        self._refresh_labels()
        self._refresh_main()
        self._refresh_heads()
        b = a.block(self.stage, self.block)
        self.bias_view.set_bias(a.relative_position_bias(self.stage, self.block), self.display.colormap,
                                f"Relative position bias · {b.window[0]}×{b.window[1]} window")
        self.bias_view.set_selected(self.head if isinstance(self.head, int) else None)
        self.merge_view.set_trace(a, self.point, self.stage)

    def _refresh_labels(self) -> None:
        a, s = self.analysis, self.stage
        g, b = a.stage_grid(s), a.block(s, self.block)
        (mh, mw), (sh, sw) = b.window, b.shift
        if b.shifted:
            kind = f"shifted windows (SW-MSA), shift ({sh}, {sw})"
        elif sum(b.configured_shift):
            kind = "regular windows: the shift is dropped, one window covers the map"
        else:
            kind = "regular windows (W-MSA)"
        self.info_label.setText(
            f"Stage {s} of 0–{a.num_stages - 1} (the paper's stage {s + 1}): {g.rows}×{g.cols} tokens of "
            f"{g.cell_w:g}×{g.cell_h:g} input px · {b.heads} heads · {a.num_blocks(s)} blocks<br>"
            f"Block {self.block}: {kind} · {mh}×{mw}-token windows · {b.num_windows} windows"
            + (f" · padded by {b.padding}" if any(b.padding) else ""))
        t = self.token
        if t is None:
            self.token_label.setText("Click the image to select a token.")
        else:
            slot = a.window_of(s, self.block, *t)
            self.token_label.setText(f"token (row {t[0]}, col {t[1]}) · window {slot.window}, "
                                     f"slot ({slot.row}, {slot.col})")

    def _refresh_main(self) -> None:
        a, d, view = self.analysis, self.display, self.main_view
        summary = self.summary_check.isChecked()
        stage = a.num_stages - 1 if summary else self.stage
        grid = a.stage_grid(stage)
        xs, ys = grid.edges()
        view.set_grid(xs, ys, d.show_grid)
        t = self.token
        if summary or t is None:
            self.overlay.clear()
            view.set_selection(None)
            if not summary:
                view.set_map(None)
                view.set_title(f"Stage {self.stage} · block {self.block} · click the image to select a token")
                return
            view.set_map(self.current_map(), grid.extent(), d.colormap, opacity=d.opacity)
            view.set_title(f"Where the model looks · attention received in stage {stage} · "
                           f"{head_text(self._summary_head())}")
            return
        parts, regions = window_marks(a, self.stage, self.block, self.partition_combo.currentData(),
                                      self.regions_check.isChecked())
        self.overlay.set_partitions(*parts)
        self.overlay.set_regions(regions)
        self.overlay.set_window([token_rect(r, xs, ys) for r in a.window_rects(self.stage, self.block, *t)])
        view.set_selection(grid.rect(*t))
        view.set_map(self.current_map(), grid.extent(), d.colormap, opacity=d.opacity)
        view.set_title(f"Attention {self.direction} token ({t[0]}, {t[1]}) · stage {self.stage} "
                       f"block {self.block} · {head_text(self.head)}")

    def _refresh_heads(self) -> None:
        a, t = self.analysis, self.token
        if t is None:
            return
        maps = crop_to_window(a.head_maps(self.stage, t, self.direction))
        self.grid_view.set_maps(maps, self.display.colormap, row_labels=[f"B{i}" for i in range(len(maps))])
        self.grid_view.plot.vb.enableAutoRange()  # fit the tiles after layout changes too
        self.grid_view.set_selected(self.block, self.head if isinstance(self.head, int) else None)

    def view_settings(self) -> dict:
        """What is shown, for captions, sidecars and reproducing a figure."""
        return {"family": "swin", "stage": self.stage, "block": self.block, "head": self.head,
                "point": None if self.point is None else list(self.point),
                "token": None if self.token is None else list(self.token), "direction": self.direction,
                "partition": self.partition_combo.currentData(), "regions": self.regions_check.isChecked(),
                "summary": self.summary_check.isChecked(), **self.display.settings()}

    def export_sources(self, settings: dict | None = None):
        """What this panel can export (vitviz.gui.export), for view_settings() updated with `settings`
        (None: what is on screen). Views: "attention", "windows", "summary", "grid" (blocks x heads),
        "bias", "head:H". See swin_export."""
        from .swin_export import export_sources

        return export_sources(self, settings)
