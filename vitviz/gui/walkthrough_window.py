"""A window that explains the attention on screen step by step, for a lecture: the query's q, the
top-k keys and their k, the scores q.k/sqrt(d) (Swin: + bias + mask), softmax, the output and the
residual around it, and ViT's patch + position embedding; with the model's own numbers
(`analysis.attention_steps`, vitviz.core.analysis.steps).

It follows the main window's panel: `set_source(analysis, state)` (the panel's stateChanged and the
window's analysisShown call it through `open_walkthrough`). The steps are computed off the GUI
thread (a run up to the block: ~0.2 s for ViT-B's last layer); a generation counter drops results of
superseded requests. Exports the figure as PDF / SVG (vector) or PNG.
"""
from __future__ import annotations

import os

from PySide6 import QtCore, QtGui, QtWidgets

from .walkthrough_paint import FIGURE_H, FIGURE_W, Walkthrough, export, paint

DEFAULT_K = 5


def build_walkthrough(analysis, state, k: int = DEFAULT_K, cmap: str = "viridis") -> Walkthrough:
    """The walk-through of the panel's state: its query / token / object, layer or block, head.
    Raises ValueError with a sentence for the user when the state selects nothing to explain."""
    st = state.resolved(analysis)
    family = analysis.family
    head = st.head if isinstance(st.head, int) else 0
    notes = [] if isinstance(st.head, int) else [f"the view fuses heads ({st.head}); head 0 shown, pick one with [ ]"]
    if getattr(st, "direction", "from") == "to" and family != "detr":
        notes.append("the view shows the query's column; this is its row")
    box = None
    if family == "vit":
        steps = analysis.attention_steps(st.layer, head, st.query)
        grid = analysis.grid
        what = "class token" if st.query == "cls" else f"patch {tuple(st.query)}"
    elif family == "swin":
        steps = analysis.attention_steps(st.stage, st.block, head, st.token)
        grid = analysis.stage_grid(st.stage)
        what = f"token {tuple(st.token)}"
    elif family == "detr":
        if st.query is None:
            raise ValueError("Select a detection (click a box) to explain its cross-attention.")
        layer = min(int(st.layer), analysis.num_layers - 1)
        steps = analysis.attention_steps(layer, head, st.query)
        grid = analysis.grid
        what = f"object query {st.query}"
        box = detection_box_input(analysis, st.query)
    else:
        raise ValueError(f"no step-by-step explanation for the {family} family")
    title = f"{analysis.model_name}: {steps.where}, {what}" + (f"  ({'; '.join(notes)})" if notes else "")
    return Walkthrough(steps, analysis.input_image(), (grid.cell_w, grid.cell_h), title, int(k), cmap, box,
                       tuple(analysis.input_mean), tuple(analysis.input_std))


def detection_box_input(analysis, query: int) -> tuple[float, float, float, float]:
    """Object query `query`'s box in model-input pixels."""
    from ..core.analysis.detr import boxes_to_pixels

    w, h = analysis.image.size
    x0, y0, x1, y1 = boxes_to_pixels(analysis.boxes[query], w, h)
    t = analysis.grid.transform
    return (*t.to_input(x0, y0), *t.to_input(x1, y1))


class _Signals(QtCore.QObject):
    """Lives in the GUI thread: the pool thread's emit runs the window's slot in the GUI thread."""

    done = QtCore.Signal(int, object)  # generation, Walkthrough or error text


class _Task(QtCore.QRunnable):
    def __init__(self, gen: int, args, signals: _Signals):
        super().__init__()
        self.gen, self.args, self.signals = gen, args, signals

    def run(self) -> None:
        try:
            out = build_walkthrough(*self.args)
        except Exception as exc:  # shown in the window instead of the figure
            out = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        self.signals.done.emit(self.gen, out)


class Canvas(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.walkthrough: Walkthrough | None = None
        self.message = "Open an image and click a patch."
        self.setMinimumSize(600, 390)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(255, 255, 255))
        if self.walkthrough is not None:
            paint(p, self.walkthrough, self.width(), self.height())
        else:
            p.setPen(QtGui.QColor(90, 90, 90))
            p.drawText(self.rect(), int(QtCore.Qt.AlignmentFlag.AlignCenter), self.message)
        p.end()


class WalkthroughWindow(QtWidgets.QWidget):
    updated = QtCore.Signal(object)  # the Walkthrough now shown (or the message text)

    def __init__(self, parent=None):
        super().__init__(parent, QtCore.Qt.WindowType.Window)
        self.setWindowTitle("Attention, step by step")
        self.resize(1200, 800)
        self.analysis = self.state = None
        self._gen = 0
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)
        self._window = None
        self._panels: set[int] = set()

        self.k_spin = QtWidgets.QSpinBox()
        self.k_spin.setRange(1, 50)
        self.k_spin.setValue(DEFAULT_K)
        self.k_spin.setPrefix("top ")
        self.k_spin.setSuffix(" keys")
        self.k_spin.setToolTip("How many keys (largest weights) to highlight and list")
        self.k_spin.valueChanged.connect(self._on_k_change)
        self.status = QtWidgets.QLabel("")
        self.export_button = QtWidgets.QPushButton("Export figure…")
        self.export_button.setToolTip("Save as PDF or SVG (vector, for slides) or PNG")
        self.export_button.clicked.connect(self.export_dialog)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(self.k_spin)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.export_button)
        self.canvas = Canvas()
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)

    @property
    def walkthrough(self) -> Walkthrough | None:
        return self.canvas.walkthrough

    # -- following the main window -------------------------------------------------------------
    def follow(self, window) -> None:
        """Track `window`'s shown analysis and its panels' states."""
        if self._window is not window:
            self._window = window
            window.analysisShown.connect(self._on_analysis_shown)
        self._on_analysis_shown(getattr(window, "analysis", None))

    @QtCore.Slot(object)
    def _on_analysis_shown(self, analysis) -> None:
        for panel in self._window.panels.values():  # panels are made per family, on first use
            if id(panel) not in self._panels:
                self._panels.add(id(panel))
                panel.stateChanged.connect(self._on_panel_state)
        if analysis is not None:
            panel = self._window.panels.get(analysis.family)
            if panel is not None:
                self.set_source(analysis, panel.state)

    @QtCore.Slot(object)
    def _on_panel_state(self, state) -> None:
        panel = self.sender()
        if panel is not None and panel.analysis is not None and panel.analysis is self._window.analysis:
            self.set_source(panel.analysis, state)

    # -- computing -----------------------------------------------------------------------------
    def set_source(self, analysis, state) -> None:
        """Explain (analysis, state): computed in the pool, shown when it is still the latest."""
        self.analysis, self.state = analysis, state
        self._gen += 1
        self.status.setText("computing…")
        cmap = getattr(getattr(self._window, "display", None), "colormap", "viridis")
        self._pool.start(_Task(self._gen, (analysis, state, self.k_spin.value(), cmap), self._signals))

    @QtCore.Slot(int, object)
    def _on_done(self, gen: int, result) -> None:
        if gen != self._gen:
            return  # a newer request is on its way
        if isinstance(result, Walkthrough):
            result.k = self.k_spin.value()  # the spin may have moved while it ran
            self.canvas.walkthrough = result
            self.status.setText(result.title)
        else:
            self.canvas.walkthrough = None
            self.canvas.message = result
            self.status.setText("")
        self.canvas.update()
        self.updated.emit(result)

    def _on_k_change(self, k: int) -> None:
        if self.canvas.walkthrough is not None:
            self.canvas.walkthrough.k = int(k)
            self.canvas.update()

    def highlighted_keys(self) -> list[tuple[int, int]]:
        """(row, col) of the keys highlighted on the image, largest weight first."""
        w = self.canvas.walkthrough
        return [] if w is None else [tuple(int(v) for v in w.steps.positions[j]) for j in w.top_keys()]

    def wait(self, msecs: int = 30000) -> bool:
        return self._pool.waitForDone(msecs)

    # -- export --------------------------------------------------------------------------------
    def export(self, path: str) -> None:
        if self.canvas.walkthrough is None:
            raise ValueError("nothing to export yet")
        export(self.canvas.walkthrough, path)

    def export_dialog(self) -> None:
        if self.canvas.walkthrough is None or os.environ.get("VITVIZ_NO_DIALOGS"):
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export the walk-through", "attention-steps.pdf", "PDF (*.pdf);;SVG (*.svg);;PNG (*.png)")
        if path:
            try:
                self.export(path)
            except (OSError, ValueError) as exc:
                QtWidgets.QMessageBox.warning(self, "Export failed", str(exc))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._pool.waitForDone(30000)
        super().closeEvent(event)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt name)
        return QtCore.QSize(FIGURE_W * 4 // 5, FIGURE_H * 4 // 5 + 40)


def open_walkthrough(window) -> WalkthroughWindow:
    """The main window's walk-through (made once, then raised), following its panel."""
    win = window.findChild(WalkthroughWindow)
    if win is None:
        win = WalkthroughWindow(window)
    win.follow(window)
    win.show()
    win.raise_()
    win.activateWindow()
    return win

