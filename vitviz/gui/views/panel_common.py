"""Pieces every family panel needs the same way: the head selector, the top-5 list, the base image
(photo or what the model sees) and the message for a click that hits no token."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...core.analysis.heads import FUSIONS


def fill_head_combo(combo: QtWidgets.QComboBox, heads: int, current: int | str) -> int | str:
    """Fusions first, then each head. Keeps `current` when it still exists, else "mean"; returns
    what is selected. Emits no signals."""
    if isinstance(current, int) and not 0 <= current < heads:
        current = "mean"
    with QtCore.QSignalBlocker(combo):
        combo.clear()
        for f in FUSIONS:
            combo.addItem(f"all heads: {f}", f)
        for h in range(heads):
            combo.addItem(f"head {h}", h)
        combo.setCurrentIndex(combo.findData(current))
    return current


def head_text(head: int | str) -> str:
    return f"head {head}" if isinstance(head, int) else f"heads {head}"


def fill_predictions(widget: QtWidgets.QListWidget, analysis, k: int = 5) -> None:
    widget.clear()
    for p in analysis.top_predictions(k):
        widget.addItem(f"{p.probability * 100:5.1f}%  {p.label}")
    if analysis.logits is None:
        widget.addItem("(checkpoint has no classifier head)")


def predictions_list() -> QtWidgets.QListWidget:
    w = QtWidgets.QListWidget()
    w.setMaximumHeight(120)
    w.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
    return w


def model_view_check() -> QtWidgets.QCheckBox:
    check = QtWidgets.QCheckBox("Show what the model sees")
    check.setToolTip("Replace the photo by the model's input: resized, cropped, de-normalised (M)")
    return check


def show_base_image(views, analysis, model_view: bool) -> None:
    """The photo, or the model's own input placed where it came from (same coordinates), drawn in
    the input's own proportions (a squeezed image is stretched back as the model saw it)."""
    t = analysis.grid.transform
    for view in views:
        view.set_image(np.asarray(analysis.image))  # keeps the view range keyed to the photo size
        view.set_aspect(t.scale_x / t.scale_y if model_view else 1.0)
        if model_view:
            view.set_image(analysis.input_image(), rect=analysis.grid.extent())


def miss_message(analysis, x: float, y: float, what: str = "patch") -> str:
    """Why a click at original pixel (x, y) selects nothing."""
    w, h = analysis.image.size
    why = "outside the image" if not (0 <= x < w and 0 <= y < h) else \
        "in a part of the image the model's preprocessing cropped away"
    return f"No {what} at ({x:.0f}, {y:.0f}): that point is {why}."


SIDE_WIDTH = (180, 310)  # px: the side column's narrowest and its usual width


def side_width(window_width: int) -> int:
    """The side column's width for a panel `window_width` wide: its usual width, less on small
    windows (a third of the width, not under the narrowest)."""
    lo, hi = SIDE_WIDTH
    return int(min(hi, max(lo, window_width * 0.3)))


def shrinkable_combos(widget: QtWidgets.QWidget) -> None:
    """The combo boxes in `widget` shrink with a narrow side column (their text elides)."""
    for combo in widget.findChildren(QtWidgets.QComboBox):
        combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(6)


def arrange_panel(panel: QtWidgets.QWidget, form: QtWidgets.QFormLayout, views: QtWidgets.QWidget,
                  display: QtWidgets.QWidget | None = None, width: int = SIDE_WIDTH[1]) -> None:
    """A scrollable side column (`form`, then the shared display controls) beside `views`, in a
    splitter (`panel.side_split`: drag it, or collapse the column). The column's layout is
    `panel.side_layout`: MainWindow moves the display controls into the active panel's column,
    before its closing stretch."""
    side = QtWidgets.QWidget()
    panel.side_layout = QtWidgets.QVBoxLayout(side)
    panel.side_layout.addLayout(form)
    if display is not None:
        panel.side_layout.addWidget(display)
    panel.side_layout.addStretch(1)
    shrinkable_combos(side)
    scroll = QtWidgets.QScrollArea()
    scroll.setWidget(side)
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # never cut off
    scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    scroll.setMinimumWidth(SIDE_WIDTH[0])
    panel.side_scroll = scroll
    split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
    split.addWidget(scroll)
    split.addWidget(views)
    split.setCollapsible(0, True)
    split.setCollapsible(1, False)
    split.setStretchFactor(1, 1)
    split.setSizes([width, 10 * width])
    panel.side_split = split
    layout = QtWidgets.QHBoxLayout(panel)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(split)
