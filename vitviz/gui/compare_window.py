"""Methods side by side on the analysis on screen, with the evidence for each next to it.

    Maps        one column per chosen method (raw attention of a layer / head, rollout, gradient
                rollout, relevance, the library baselines Integrated Gradients and Grad-CAM), over
                what the model saw; each column has its own parameters, edited in a form built from
                the method's Param declarations (vitviz.gui.compare_columns; a method can have two
                columns), and is titled with them; pan / zoom linked; a click marks the same token in
                every view, reads each map's value there and shows that column's parameters; one
                shared colour scale or each its own (switch).
    Curves      deletion and insertion (vitviz.core.faithfulness) for the target class, one line per
                column plus the seeded `random` baseline, positive / negative perturbation AUCs, an AUC
                table beside; optionally the cascading-randomisation sanity check as a curve
                (Spearman rho with the trained map per unit re-initialised), a map that survives it
                flagged in the table and in its title (vitviz.gui.compare_curves draws them).

Maps and curves are computed in the window's own worker thread (a pool of one), with progress and
cancel; results of a superseded request (another analysis, target or choice) are dropped on arrival.
Maps are kept per (column, target) for the analysis shown: editing one column recomputes that one.
`export_png(path)` saves the maps (titles, colorbars), the curves and the table as one figure.
"""
from __future__ import annotations

import atexit
import threading
import weakref

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ..core.colormaps import lookup_table
from .colormaps import DEFAULT_COLORMAP, colormap
from .compare_columns import ColumnEditor, Entry
from .compare_curves import BG, CurvesPanel

pg.setConfigOptions(imageAxisOrder="row-major")
FAMILIES = ("vit", "swin")  # classifiers: the curves score class probabilities
DEFAULT = ("attention", "rollout", "grad_rollout", "relevance", "integrated_gradients", "grad_cam")
OPACITY = 0.7
SANITY_COST = 1000  # progress units of one sanity run (a forward per unit, and a backward for gradient maps)


class _Signals(QtCore.QObject):
    """Made in the GUI thread, emitted from the pool's: the window's slots run in the GUI thread."""

    map = QtCore.Signal(int, str, object)  # request id, entry key, ndarray or error text
    curve = QtCore.Signal(int, str, object)  # request id, method key, Faithfulness
    perturbation = QtCore.Signal(int, str, object)  # request id, method key, PerturbationResult
    sanity = QtCore.Signal(int, str, object)  # request id, method key, Sanity or error text
    progress = QtCore.Signal(int, int, str)  # request id, permille, what
    done = QtCore.Signal(int, str)  # request id, "" / "cancelled" / an error


_RUNNING: set = set()  # tasks in flight keep themselves (and their signals) alive
_WINDOWS: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    """At exit, stop the windows' tasks and wait for them: a pool thread still running Python while
    the interpreter finalises is killed mid-call (Qt reports an exception from a worker thread)."""
    for w in list(_WINDOWS):
        try:
            w.cancel()
            w._pool.waitForDone(20000)
        except RuntimeError:  # its C++ side is gone, and with it the pool (which waited)
            pass


class _Task(QtCore.QRunnable):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def run(self) -> None:
        try:
            self.fn()
        except RuntimeError as exc:  # the window (and its signals) went away while this ran
            if "deleted" not in str(exc):
                raise
        finally:
            _RUNNING.discard(self)


def _bar(lo: float, hi: float, cm, width: int) -> pg.ColorBarItem:
    """A fixed colorbar whose tick labels fit at any range (no "(x0.001)" prefix)."""
    from .views.image_view import compact_ticks

    bar = pg.ColorBarItem(values=(lo, hi), colorMap=cm, width=width, interactive=False, colorMapMenu=False)
    bar.axis.tickStrings = compact_ticks
    bar.axis.enableAutoSIPrefix(False)
    return bar


def _params(entry: Entry, target: int) -> dict:
    from ..core.methods import get_method

    kw = dict(entry.kwargs)
    if any(p.name == "target" for p in get_method(entry.method).params):
        kw.setdefault("target", target)
    return kw


def _pen(i: int, n: int):
    return pg.mkPen(pg.intColor(i, hues=max(n, 2), values=1, maxValue=255), width=2)


RANDOM_PEN = dict(color="#e8eaed", width=2, style=QtCore.Qt.PenStyle.DashLine)


class CompareWindow(QtWidgets.QWidget):
    mapsShown = QtCore.Signal()  # every chosen map drawn (tests wait on it)
    curvesShown = QtCore.Signal(str)  # the curves run ended: "" / "cancelled" / an error

    def __init__(self, parent=None):
        super().__init__(parent, QtCore.Qt.WindowType.Window)
        self.setWindowTitle("Compare methods — vitviz")
        self.resize(1280, 820)
        self.analysis = None
        self.maps: dict[str, object] = {}
        self.curves: dict[str, object] = {}
        self.sanity: dict[str, object] = {}
        self.perturbations: dict[str, object] = {}
        self.selected: tuple[int, int] | None = None
        self._entries: list[Entry] = []
        self._cache: dict = {}  # (entry base key, target) -> map or error text, for self.analysis
        self._rid = 0
        self._cancel = threading.Event()
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        _WINDOWS.add(self)
        self._signals = _Signals()
        s = self._signals
        s.map.connect(self._on_map)
        s.curve.connect(self._on_curve)
        s.perturbation.connect(self._on_perturbation)
        s.sanity.connect(self._on_sanity)
        s.progress.connect(self._on_progress)
        s.done.connect(self._on_done)
        self._build()

    # ------------------------------------------------------------------------------------ layout

    def _build(self) -> None:
        side = QtWidgets.QVBoxLayout()
        self.columns = ColumnEditor()
        self.columns.changed.connect(self._request_maps)
        self.method_list = self.columns.method_list
        side.addWidget(self.columns, 1)
        form = QtWidgets.QFormLayout()
        self.target_combo = QtWidgets.QComboBox()
        self.target_combo.setToolTip("The class every class-specific column explains and the curves score")
        self.target_combo.currentIndexChanged.connect(lambda *_: self._request_maps())
        self.steps_spin = QtWidgets.QSpinBox()
        self.steps_spin.setRange(2, 500)
        self.steps_spin.setValue(50)
        self.steps_spin.setToolTip("Deletion / insertion steps (each a forward of the perturbed image)")
        form.addRow("Target class", self.target_combo)
        form.addRow("Curve steps", self.steps_spin)
        side.addLayout(form)
        self.shared_box = QtWidgets.QCheckBox("One colour scale for all maps")
        self.shared_box.toggled.connect(self._draw_maps)
        self.sanity_box = QtWidgets.QCheckBox("Sanity check (model randomisation)")
        self.sanity_box.setToolTip("Re-initialise the model from the top, unit by unit, and follow each map's "
                                   "rank correlation with the trained one (Adebayo et al. 2018)")
        self.run_button = QtWidgets.QPushButton("Compute curves")
        self.run_button.clicked.connect(self.run_curves)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QtWidgets.QPushButton("Export…")
        self.export_button.setToolTip("The comparison as one PNG figure (2x, for slides), or the curves and AUCs as JSON")
        self.export_button.clicked.connect(self._export_dialog)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        for w in (self.shared_box, self.sanity_box, self.run_button, self.cancel_button, self.progress,
                  self.export_button):
            side.addWidget(w)
        side_box = QtWidgets.QWidget()
        side_box.setLayout(side)
        side_box.setMaximumWidth(300)

        self.maps_view = pg.GraphicsLayoutWidget()
        self.maps_view.setBackground(BG)
        self.maps_view.scene().sigMouseClicked.connect(self._on_click)
        self.curves_box = CurvesPanel()
        self.deletion_plot = self.curves_box.deletion_plot
        self.insertion_plot = self.curves_box.insertion_plot
        self.sanity_plot = self.curves_box.sanity_plot
        self.table = self.curves_box.table
        self.status = QtWidgets.QLabel("Open an image with a ViT or Swin classifier to compare methods.")
        self.status.setWordWrap(True)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.maps_view)
        split.addWidget(self.curves_box)
        split.setSizes([470, 300])
        main = QtWidgets.QVBoxLayout()
        main.addWidget(split, 1)
        main.addWidget(self.status)
        top = QtWidgets.QHBoxLayout(self)
        top.addWidget(side_box, 0)
        top.addLayout(main, 1)

    # ------------------------------------------------------------------------------------ inputs

    def set_analysis(self, analysis) -> None:
        """Show `analysis`; a family without class scores shows why instead. The columns and their
        parameters carry over."""
        self.analysis = analysis
        self._cache = {}
        self._clear_curves()
        self.selected = None
        if analysis is None or analysis.family not in FAMILIES or getattr(analysis, "logits", None) is None:
            with QtCore.QSignalBlocker(self.columns):
                self.columns.set_analysis(None)
            self.maps, self._entries = {}, []
            self.status.setText("The comparison needs a ViT or Swin classifier.")
            self._draw_maps()
            return
        with QtCore.QSignalBlocker(self.columns), QtCore.QSignalBlocker(self.target_combo):
            self.columns.set_analysis(analysis, DEFAULT)
            self.target_combo.clear()
            for p in analysis.top_predictions(5):
                self.target_combo.addItem(f"{p.label} ({p.index}), p = {p.probability:.2f}", p.index)
        self._request_maps()

    def chosen_methods(self) -> list[str]:
        return self.columns.chosen_methods()

    def set_methods(self, names) -> None:
        """Tick exactly these methods (for scripts and tests)."""
        self.columns.set_methods(names)

    def set_column_params(self, method: str, params: dict, nth: int = 0) -> None:
        """Parameters of the `nth` column of `method` (for scripts and tests), as typed into its form."""
        self.columns.set_params(self.columns.row_of(method, nth), params)

    def target(self) -> int:
        t = self.target_combo.currentData()
        return int(t) if t is not None else -1

    def entries(self) -> list[Entry]:
        return self.columns.entries()

    # ------------------------------------------------------------------------------------ maps

    def _next_request(self) -> int:
        self._rid += 1
        self._cancel.set()  # a running curve task stops at its next batch
        self._cancel = threading.Event()
        return self._rid

    def _submit(self, fn) -> None:
        task = _Task(fn)
        _RUNNING.add(task)
        self._pool.start(task)

    @QtCore.Slot()
    def _request_maps(self) -> None:
        """Show the ticked columns: maps known for this analysis and target at once, the others from
        the worker (the previous drawing stays until they are all in)."""
        if self.analysis is None:
            return
        self._clear_curves()
        rid, a, entries, t, sig = self._next_request(), self.analysis, self.entries(), self.target(), self._signals
        cancel = self._cancel
        self._entries = entries
        self.maps = {e.key: self._cache.get((e.base_key, t)) for e in entries}
        todo = [e for e in entries if self.maps[e.key] is None]
        if not todo:
            self._maps_complete()
            return
        self.status.setText(f"Computing {len(todo)} map(s)…")

        def work():
            for e in todo:
                if cancel.is_set():  # superseded, or the window closed
                    return
                try:
                    value = np.asarray(a.explain(e.method, **_params(e, t)), np.float32)
                except Exception as exc:  # a missing optional package, an unsuited model: shown in place
                    value = f"{type(exc).__name__}: {exc}"
                sig.map.emit(rid, e.key, value)
        self._submit(work)

    @QtCore.Slot(int, str, object)
    def _on_map(self, rid: int, key: str, value) -> None:
        if rid != self._rid or key not in self.maps:
            return
        self.maps[key] = value
        e = next(e for e in self._entries if e.key == key)
        self._cache[(e.base_key, self.target())] = value
        if all(v is not None for v in self.maps.values()):
            self._maps_complete()

    def _maps_complete(self) -> None:
        self._draw_maps()
        self.status.setText(self._status_text())
        self.mapsShown.emit()

    def _status_text(self) -> str:
        a = self.analysis
        t = a.target_info(self.target())
        return (f"{a.model_name}: target {t.label}, p = {t.probability:.3f}. Click a token to read every map "
                f"there and edit that column's parameters; pan and zoom are linked.")

    def _levels(self) -> dict:
        ok = {k: v for k, v in self.maps.items() if isinstance(v, np.ndarray) and np.isfinite(v).any()}
        if self.shared_box.isChecked() and ok:
            lo = min(float(np.nanmin(v)) for v in ok.values())
            hi = max(float(np.nanmax(v)) for v in ok.values())
            return {k: (lo, hi if hi > lo else lo + 1e-9) for k in ok}
        return {k: (float(np.nanmin(v)), max(float(np.nanmax(v)), float(np.nanmin(v)) + 1e-9)) for k, v in ok.items()}

    def _draw_maps(self) -> None:
        view = self.maps_view
        view.clear()
        self.plots, self.overlays, self.marks = {}, {}, {}
        a = self.analysis
        if a is None or not self.maps or any(v is None for v in self.maps.values()):
            return
        photo = a.input_image()
        h, w = photo.shape[:2]
        g = a.grid
        levels, first, cm = self._levels(), None, colormap(DEFAULT_COLORMAP)
        shared = self.shared_box.isChecked()
        cols = len(self._entries)
        per_row = cols if cols <= 4 else (cols + 1) // 2
        for i, e in enumerate(self._entries):
            value = self.maps[e.key]
            plot = view.addPlot(row=2 * (i // per_row), col=2 * (i % per_row))
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.invertY(True)
            plot.setAspectLocked(True)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            base = pg.ImageItem(photo, levels=(0, 255))
            base.setRect(QtCore.QRectF(0, 0, w, h))
            plot.addItem(base)
            flag = self._flag_text(e.key)
            plot.setTitle(self._wrapped(e.title()) + flag, color="w", size="9pt")
            self.plots[e.key] = plot
            if isinstance(value, np.ndarray):
                lo, hi = levels.get(e.key, (0.0, 1.0))
                over = pg.ImageItem(np.nan_to_num(value, nan=lo), levels=(lo, hi))
                over.setLookupTable(lookup_table(DEFAULT_COLORMAP))
                over.setOpacity(OPACITY)
                full = value.shape == g.shape  # else (an unknown grid): stretched over the input
                over.setRect(QtCore.QRectF(0, 0, g.cols * g.cell_w if full else w, g.rows * g.cell_h if full else h))
                plot.addItem(over)
                self.overlays[e.key] = over
                if not shared:
                    bar = _bar(lo, hi, cm, 10)
                    bar.setImageItem(over)
                    view.addItem(bar, row=2 * (i // per_row), col=2 * (i % per_row) + 1)
            else:
                text = pg.TextItem(str(value), color="#ff8a80", anchor=(0.5, 0.5))
                text.setPos(w / 2, h / 2)
                plot.addItem(text)
            mark = QtWidgets.QGraphicsRectItem(0, 0, 0, 0)
            mark.setPen(pg.mkPen("#ff4081", width=2, cosmetic=True))
            mark.setVisible(False)
            plot.addItem(mark)
            self.marks[e.key] = mark
            plot.vb.setRange(QtCore.QRectF(0, 0, w, h), padding=0.02)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
                plot.setYLink(first)
        self._fit_size = (w, h)
        QtCore.QTimer.singleShot(0, self, self.fit)  # once the layout has sized the views (not after self is gone)
        if shared and self.overlays:
            lo, hi = next(iter(levels.values()))
            bar = _bar(lo, hi, cm, 12)
            bar.setImageItem(list(self.overlays.values()))
            view.addItem(bar, row=0, col=2 * per_row, rowspan=2 * ((cols - 1) // per_row) + 1)
        self._show_selection()

    def fit(self) -> None:
        """Every map shows the whole input (the views are linked: fitting the first fits all)."""
        if self.plots:
            w, h = self._fit_size
            next(iter(self.plots.values())).vb.setRange(QtCore.QRectF(0, 0, w, h), padding=0.02)

    @staticmethod
    def _wrapped(title: tuple[str, str]) -> str:
        name, params = title
        return name if not params else f"{name}<br><span style='font-size:7pt'>{params}</span>"

    def _flag_text(self, key: str) -> str:
        s = self.sanity.get(key)
        return " <span style='color:#ffb000'>⚠ sanity</span>" if getattr(s, "flagged", False) else ""

    def _on_click(self, ev) -> None:
        a = self.analysis
        if a is None:
            return
        for key, plot in self.plots.items():
            if plot.vb.sceneBoundingRect().contains(ev.scenePos()):
                p = plot.vb.mapSceneToView(ev.scenePos())
                r, c = int(p.y() // a.grid.cell_h), int(p.x() // a.grid.cell_w)
                self.columns.select(key)  # its parameters in the form
                if 0 <= r < a.grid.rows and 0 <= c < a.grid.cols:
                    self.select_token(r, c)
                return

    def select_token(self, row: int, col: int) -> None:
        """Mark token (row, col) in every map and read each map's value there."""
        self.selected = (row, col)
        self._show_selection()

    def _show_selection(self) -> None:
        if self.selected is None or self.analysis is None:
            return
        g, (r, c) = self.analysis.grid, self.selected
        parts = []
        for e in self._entries:
            mark = self.marks.get(e.key)
            if mark is not None:
                mark.setRect(c * g.cell_w, r * g.cell_h, g.cell_w, g.cell_h)
                mark.setVisible(True)
            v = self.maps.get(e.key)
            if isinstance(v, np.ndarray) and v.shape == g.shape:
                parts.append(f"{e.short()} {v[r, c]:.4g}")
        self.status.setText(f"Token (row {r}, col {c}): " + "; ".join(parts))

    # ------------------------------------------------------------------------------------ curves

    def run_curves(self) -> None:
        """Deletion / insertion and positive / negative perturbation (and the sanity check when
        ticked) of every column and of `random`, in the worker."""
        from ..core.faithfulness import RANDOM, faithfulness, perturbation
        from ..core.faithfulness.curves import Cancelled
        from ..core.faithfulness.perturb import FRACTIONS
        from ..core.faithfulness.sanity import sanity

        if self.analysis is None or not self.maps or any(v is None for v in self.maps.values()):
            return
        self._clear_curves()
        self._next_request()  # the maps stay; a curves run still going stops
        rid, a, t, steps, cancel, sig = self._rid, self.analysis, self.target(), self.steps_spin.value(), \
            self._cancel, self._signals
        # the target goes in as faithfulness's own argument (it sets it for class-specific methods); the
        # column's values as a dict (Integrated Gradients has a `steps` of its own)
        jobs = [(e.key, e.method, dict(e.kwargs)) for e in self._entries
                if isinstance(self.maps.get(e.key), np.ndarray)] + [(RANDOM, RANDOM, {})]
        check = self.sanity_box.isChecked()
        per = 2 * (steps + 1) + 2 * len(FRACTIONS)
        total = len(jobs) * per + (len(jobs) - 1) * (SANITY_COST if check else 0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)

        def work():
            done = 0
            try:
                for key, method, params in jobs:
                    def prog(d, n, base=done, key=key):
                        sig.progress.emit(rid, int(1000 * (base + d) / total), f"{key}: curves")
                    f = faithfulness(a, method, steps, t, progress=prog, cancel=cancel, method_params=params)
                    done += 2 * (steps + 1)
                    sig.curve.emit(rid, key, f)

                    def pprog(d, n, base=done, key=key):
                        sig.progress.emit(rid, int(1000 * (base + d) / total), f"{key}: perturbation")
                    p = perturbation(a, method, t, progress=pprog, cancel=cancel, method_params=params)
                    done += 2 * len(FRACTIONS)
                    sig.perturbation.emit(rid, key, p)
                    if check and method != RANDOM:
                        def sprog(d, n, base=done, key=key):
                            sig.progress.emit(rid, int(1000 * (base + SANITY_COST * d / n) / total), f"{key}: sanity")
                        try:
                            s = sanity(a, method, t, progress=sprog, cancel=cancel, method_params=params)
                        except Cancelled:
                            raise
                        except Exception as exc:  # a model layout the cascade does not know
                            s = f"{type(exc).__name__}: {exc}"
                        done += SANITY_COST
                        sig.sanity.emit(rid, key, s)
                sig.done.emit(rid, "")
            except Cancelled:
                sig.done.emit(rid, "cancelled")
            except Exception as exc:
                sig.done.emit(rid, f"{type(exc).__name__}: {exc}")
        self._submit(work)

    def cancel(self) -> None:
        self._cancel.set()
        self._cancel = threading.Event()

    def _clear_curves(self) -> None:
        self.curves, self.sanity, self.perturbations = {}, {}, {}
        self.curves_box.clear()

    @QtCore.Slot(int, int, str)
    def _on_progress(self, rid: int, permille: int, what: str) -> None:
        if rid == self._rid:
            self.progress.setValue(permille)
            self.progress.setFormat(f"{what} %p%")

    def _pen_of(self, key: str):
        keys = [e.key for e in self._entries]
        return pg.mkPen(**RANDOM_PEN) if key not in keys else _pen(keys.index(key), len(keys))

    @QtCore.Slot(int, str, object)
    def _on_curve(self, rid: int, key: str, f) -> None:
        if rid != self._rid:
            return
        self.curves[key] = f
        label = "random (seed 0)" if f.method == "random" else self._short(key)
        self.curves_box.add_curves(key, label, f, self._pen_of(key))

    @QtCore.Slot(int, str, object)
    def _on_perturbation(self, rid: int, key: str, p) -> None:
        if rid != self._rid:
            return
        self.perturbations[key] = p
        self.curves_box.add_perturbation(key, self._short(key), p)

    @QtCore.Slot(int, str, object)
    def _on_sanity(self, rid: int, key: str, s) -> None:
        if rid != self._rid:
            return
        self.sanity[key] = s
        self.curves_box.add_sanity(key, self._short(key), s, self._pen_of(key))
        plot = self.plots.get(key)
        entry = next((e for e in self._entries if e.key == key), None)
        if plot is not None and entry is not None:
            plot.setTitle(self._wrapped(entry.title()) + self._flag_text(key), color="w", size="9pt")

    @QtCore.Slot(int, str)
    def _on_done(self, rid: int, why: str) -> None:
        if rid != self._rid:
            return
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        if why:
            self.status.setText(f"Curves: {why}")
        self.curvesShown.emit(why)

    def _short(self, key: str) -> str:
        e = next((e for e in self._entries if e.key == key), None)
        return e.short() if e is not None else key

    # ------------------------------------------------------------------------------------ export

    def figure(self, scale: float = 2.0) -> QtGui.QImage:
        """The maps (titles, colorbars), then the curves, the sanity curve and the AUC table, under a
        caption (model, target): one image, drawn `scale` times the window's size (text and lines
        redrawn at that size, not magnified: for slides)."""
        parts = [self.maps_view, self.curves_box]
        caption = self.status.text() if self.analysis is None else self._status_text().split(". Click")[0]
        w = max(p.width() for p in parts)
        top = 28
        h = top + sum(p.height() for p in parts)
        out = QtGui.QImage(int(round(w * scale)), int(round(h * scale)), QtGui.QImage.Format.Format_RGB32)
        out.fill(QtGui.QColor(BG))
        painter = QtGui.QPainter(out)
        painter.setRenderHints(QtGui.QPainter.RenderHint.Antialiasing | QtGui.QPainter.RenderHint.TextAntialiasing
                               | QtGui.QPainter.RenderHint.SmoothPixmapTransform)
        painter.scale(scale, scale)
        painter.setPen(QtGui.QColor("white"))
        painter.drawText(QtCore.QRectF(8, 0, w - 16, top), QtCore.Qt.AlignmentFlag.AlignVCenter, caption)
        y = top
        for p in parts:
            QtWidgets.QWidget.render(p, painter, QtCore.QPoint(0, y))  # (a QGraphicsView's own render is the scene's)
            y += p.height()
        painter.end()
        return out

    def export_png(self, path, scale: float = 2.0) -> None:
        if not self.figure(scale).save(str(path), "PNG"):
            raise OSError(f"could not write {path}")

    def evidence(self) -> dict:
        """What the window shows, as data: the columns with their parameters, each one's curves,
        perturbation and sanity results (the core's to_json), the model and the target."""
        a = self.analysis
        if a is None:
            return {}
        t = a.target_info(self.target())
        return {"model": a.model_name, "target": int(t.index), "target_name": t.name,
                "steps": self.steps_spin.value(),
                "columns": [{"key": e.key, "method": e.method, "params": dict(e.kwargs), "title": e.short()}
                            for e in self._entries],
                "faithfulness": {k: f.to_json() for k, f in self.curves.items()},
                "perturbation": {k: p.to_json() for k, p in self.perturbations.items()},
                "sanity": {k: ({"error": s} if isinstance(s, str) else s.to_json()) for k, s in self.sanity.items()}}

    def export_json(self, path) -> None:
        import json

        with open(path, "w") as fh:
            json.dump(self.evidence(), fh, indent=1, default=lambda v: v.item() if hasattr(v, "item") else str(v))

    def _export_dialog(self) -> None:
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export comparison", "comparison.png", "PNG figure (*.png);;Curves and AUCs as JSON (*.json)")
        if path:
            try:
                if path.lower().endswith(".json") or "JSON" in chosen:
                    self.export_json(path)
                else:
                    self.export_png(path)
            except OSError as exc:
                QtWidgets.QMessageBox.warning(self, "Export failed", str(exc))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.cancel()
        super().closeEvent(event)


def get_title(entry: Entry) -> str:
    """The method's title with its view context and changed parameters: for legends and the table."""
    return entry.short()


def open_compare_window(parent, analysis=None) -> CompareWindow:
    """The CompareWindow of `parent` (made once, then raised), showing `analysis` when given."""
    from .tool_windows import open_tool_window

    return open_tool_window(parent, CompareWindow, analysis)
