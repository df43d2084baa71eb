"""The ViT paper's and DINO's analyses of the analysis on screen, in a window of their own.

    Distance / entropy  the paper's scatter: x = layer, y = mean attention distance (or attention
                        entropy, toggled), one dot per head; hover shows the value; a click emits
                        select(layer, head) for the main view.
    Position embedding  rows x cols small maps: each patch's position-embedding cosine similarity
                        with every patch (the embedding the forward used).
    DINO masks          per head, the smallest set of patches holding `threshold` of the class
                        token's attention: all heads' contours over the model input, with a legend,
                        and each head's mask in a grid.
    DETR queries        the DETR paper's Fig. 7: each query slot's box centres, coloured by box size.

"Analyse folder..." (analyses_folder.FolderBar) runs the image-dependent analyses over a folder in a
thread of its own; "Show" switches the plots between the image on screen and the folder's means.

Everything is computed in a worker thread of the window; a result for a superseded request (a new
analysis, another threshold) is dropped on arrival.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..core.analysis.dino_masks import mask_outline
from .analyses_folder import FolderBar
from .detr_queries_view import DetrQueriesView
from .views.head_grid import HeadGridView, composite
from .views.tile_plot import highlight_item, tile_plot

pg.setConfigOptions(imageAxisOrder="row-major")  # as the image views: arrays are (rows, cols)
FAMILIES = ("vit", "swin", "detr")  # Swin: distance and entropy, per block; DETR: the query slots
SPREAD = 0.5  # the heads of a layer spread over this width around the layer's x, so dots can be picked
NORMS_TAB = 3  # token norms: a forward of their own, computed when the tab is shown
FILTERS_TAB = 4
DETR_TAB = 5
IMAGE, FOLDER = 0, 1  # what the plots show: the image on screen, or the last folder run's means
FILTERS_PER_ROW = 7  # the paper's 28 components as 4 rows of 7
HIGH_NORM = 2.0  # patch tokens above this many times the layer's median patch norm are marked


class _Signals(QtCore.QObject):
    """Made in the GUI thread, emitted from the pool's thread: the window's slot runs in the GUI thread."""

    done = QtCore.Signal(int, object)  # request id, {name: ndarray or error text}


_RUNNING: set = set()  # tasks in flight keep their Python objects (and their signals) alive


class _Task(QtCore.QRunnable):
    def __init__(self, rid: int, analysis, requests, signals: _Signals):
        super().__init__()
        self.rid, self.analysis, self.requests, self.signals = rid, analysis, requests, signals
        self.started = False

    def run(self) -> None:
        self.started = True
        out = {}
        try:
            for name, params in self.requests:
                try:
                    out[name] = self.analysis.analyse(name, **params)
                except Exception as exc:  # shown in the tab instead of the plot; the others still run
                    out[name] = f"{type(exc).__name__}: {exc}"
            self.signals.done.emit(self.rid, out)
        finally:
            _RUNNING.discard(self)


class AnalysesWindow(QtWidgets.QWidget):
    select = QtCore.Signal(int, int)  # (layer, head) of a clicked dot
    resultsShown = QtCore.Signal()  # every tab drawn from the latest request (tests wait on it)

    def __init__(self, parent=None):
        super().__init__(parent, QtCore.Qt.WindowType.Window)
        self.setWindowTitle("Analyses — vitviz")
        self.resize(980, 640)
        self.analysis = None
        self.results: dict = {}
        self._rid = 0
        # one worker thread of the window's own (a pool of one: requests run in order, pending
        # superseded ones are dropped); deleting the window waits for a running task, never kills it
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _Signals()  # no parent: a task still running after the window is gone emits into nothing
        self._signals.done.connect(self._on_done)

        self.status = QtWidgets.QLabel("Open an image with a ViT to see its analyses.")
        self.tabs = QtWidgets.QTabWidget()
        self.folder = None  # the last folder run's FolderMeasures (for the model on screen)
        self.source_box = QtWidgets.QComboBox()
        self.source_box.addItems(["the image on screen", "a folder (none analysed)"])
        self.source_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source_box.setMinimumContentsLength(28)
        self.source_box.setToolTip("What the distance / entropy scatter and the DETR slots show")
        self.folder_bar = FolderBar()
        self.folder_bar.finished.connect(self._on_folder_done)
        top = QtWidgets.QVBoxLayout(self)
        top.addWidget(self.tabs, 1)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Show"))
        row.addWidget(self.source_box)
        row.addWidget(self.folder_bar, 1)
        top.addLayout(row)
        top.addWidget(self.status)
        self._build_scatter_tab()
        self._build_position_tab()
        self._build_masks_tab()
        self.detr_view = DetrQueriesView()
        self.tabs.addTab(self.detr_view, "DETR queries")
        self._set_folder(None)
        self.source_box.currentIndexChanged.connect(self._on_source_change)

    # ------------------------------------------------------------------------------------ tabs

    def _build_scatter_tab(self) -> None:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        row = QtWidgets.QHBoxLayout()
        self.entropy_box = QtWidgets.QCheckBox("Entropy (nats) instead of distance")
        self.entropy_box.toggled.connect(self._draw_scatter)
        self.hover_label = QtWidgets.QLabel("Hover over a dot for its value; click it to show that head.")
        row.addWidget(self.entropy_box)
        row.addStretch(1)
        row.addWidget(self.hover_label)
        lay.addLayout(row)
        self.scatter_plot = pg.PlotWidget(background="#202124")
        self.scatter_plot.setMenuEnabled(False)
        self.scatter_plot.hideButtons()
        self.scatter_plot.showGrid(x=False, y=True, alpha=0.25)
        self.scatter_plot.setLabel("bottom", "layer")
        self.scatter = pg.ScatterPlotItem(size=9, hoverable=True, hoverSize=13, tip=None,
                                          hoverPen=pg.mkPen("w", width=2))
        self.scatter.sigHovered.connect(self._on_hover)
        self.scatter.sigClicked.connect(self._on_click)
        self.scatter_plot.addItem(self.scatter)
        lay.addWidget(self.scatter_plot, 1)
        self.tabs.addTab(page, "Distance / entropy")

    def _build_position_tab(self) -> None:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        self.position_note = QtWidgets.QLabel("Cosine similarity of each patch's position embedding "
                                              "with every other patch's (tile = row, col of the patch).")
        self.position_grid = HeadGridView("row", "col")
        self.position_grid.tileClicked.connect(self.show_patch_similarity)
        view = pg.GraphicsLayoutWidget()
        view.setBackground("#202124")
        self.patch_plot = tile_plot(view, top_axis=False)
        self.patch_photo, self.patch_overlay = pg.ImageItem(), pg.ImageItem()
        for item in (self.patch_photo, self.patch_overlay):
            self.patch_plot.addItem(item)
        self.patch_mark = highlight_item(self.patch_plot)
        split = QtWidgets.QSplitter()
        split.addWidget(self.position_grid)
        split.addWidget(view)
        split.setSizes([560, 380])
        lay.addWidget(self.position_note)
        lay.addWidget(split, 1)
        self.tabs.addTab(page, "Position embedding")
        self.patch = (0, 0)  # the patch whose map is shown over the image (click a tile)

    def _build_masks_tab(self) -> None:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        row = QtWidgets.QHBoxLayout()
        self.threshold = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.05, maximum=1.0, singleStep=0.05, value=0.6)
        self.mask_layer = QtWidgets.QSpinBox(minimum=-1, maximum=0, value=-1)
        self.mask_layer.setSpecialValueText("last")
        for label, w in (("Mass kept", self.threshold), ("Layer", self.mask_layer)):
            row.addWidget(QtWidgets.QLabel(label))
            row.addWidget(w)
            w.valueChanged.connect(self._request)
        row.addStretch(1)
        lay.addLayout(row)
        self.masks_view = pg.GraphicsLayoutWidget()
        self.masks_view.setBackground("#202124")
        self.masks_plot = tile_plot(self.masks_view, top_axis=False)
        self.masks_image = pg.ImageItem()
        self.masks_plot.addItem(self.masks_image)
        self.legend = self.masks_plot.addLegend(offset=(-5, 5), labelTextColor="w",
                                                brush=pg.mkBrush(0, 0, 0, 160))
        self.contours: list[pg.PlotDataItem] = []
        self.mask_grid = HeadGridView("", "head")
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.masks_view)
        split.addWidget(self.mask_grid)
        split.setSizes([430, 140])
        lay.addWidget(split, 1)
        self.tabs.addTab(page, "DINO masks")
        self._build_norms_tab()
        self._build_filters_tab()

    def _build_filters_tab(self) -> None:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        self.filters_note = QtWidgets.QLabel("")
        view = pg.GraphicsLayoutWidget()
        view.setBackground("#202124")
        self.filters_plot = tile_plot(view, top_axis=False)
        self.filters_image = pg.ImageItem()
        self.filters_plot.addItem(self.filters_image)
        lay.addWidget(self.filters_note)
        lay.addWidget(view, 1)
        self.tabs.addTab(page, "Patch filters")

    def _build_norms_tab(self) -> None:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        row = QtWidgets.QHBoxLayout()
        self.norm_layer = QtWidgets.QSpinBox(minimum=-1, maximum=0, value=-1)
        self.norm_layer.setSpecialValueText("last")
        self.norm_layer.valueChanged.connect(self._draw_norms)
        self.norms_label = QtWidgets.QLabel("")
        self.norms_label.setWordWrap(True)
        row.addWidget(QtWidgets.QLabel("Layer"))
        row.addWidget(self.norm_layer)
        row.addWidget(self.norms_label, 1)
        lay.addLayout(row)
        view = pg.GraphicsLayoutWidget()
        view.setBackground("#202124")
        self.norms_plot = tile_plot(view, top_axis=False)
        self.norms_image = pg.ImageItem()
        self.norms_plot.addItem(self.norms_image)
        self.outliers = pg.PlotDataItem(connect="pairs", pen=pg.mkPen("#ff3b30", width=2))
        self.norms_plot.addItem(self.outliers)
        self.hist_plot = view.addPlot(row=0, col=1)
        self.hist_plot.setMenuEnabled(False)
        self.hist_plot.hideButtons()
        self.hist_plot.setLabel("bottom", "token norm")
        self.hist_plot.setLabel("left", "tokens")
        self.hist = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(80, 160, 255, 150))
        self.hist_plot.addItem(self.hist)
        self.prefix_lines: list = []
        lay.addWidget(view, 1)
        self.tabs.addTab(page, "Token norms")
        self.tabs.currentChanged.connect(lambda i: self._request() if self._norms_missing() else None)

    def _norms_missing(self) -> bool:
        return (self.tabs.currentIndex() == NORMS_TAB and getattr(self.analysis, "family", None) == "vit"
                and "token_norms" not in self.results)

    # ------------------------------------------------------------------------------ computing

    @QtCore.Slot(object)
    def set_analysis(self, analysis) -> None:
        """Show the analyses of `analysis` (a ViTAnalysis; other families say what applies)."""
        from ..core.analysis.over_images import FOLDER_ANALYSES

        self.analysis = analysis
        family = getattr(analysis, "family", None)
        self.results = {}
        if self.folder is not None and (self.folder.model_name, self.folder.weights) != \
                (getattr(analysis, "model_name", None), getattr(analysis, "weights", None)):
            self._set_folder(None)  # another model: its folder means do not describe this one
        self.folder_bar.set_analysis(analysis, FOLDER_ANALYSES.get(family, ()))
        self.tabs.setTabEnabled(0, family in ("vit", "swin"))
        for i in (1, 2, NORMS_TAB, FILTERS_TAB):  # ViT only
            self.tabs.setTabEnabled(i, family == "vit")
        self.tabs.setTabEnabled(DETR_TAB, family == "detr")
        if family == "detr":
            self.tabs.setCurrentIndex(DETR_TAB)
        elif self.tabs.currentIndex() == DETR_TAB:
            self.tabs.setCurrentIndex(0)
        if family not in FAMILIES:
            self._rid += 1
            self.results = {}
            self.status.setText(f"These analyses are for ViT, Swin and DETR models; the analysis on screen is "
                                f"{family or 'none'}.")
            self.scatter.clear()
            self.detr_view.clear()
            return
        if family == "vit":
            for spin in (self.mask_layer, self.norm_layer):
                spin.blockSignals(True)
                spin.setRange(-1, analysis.num_layers - 1)
                spin.blockSignals(False)
        self._request()

    def _request(self) -> None:
        family = getattr(self.analysis, "family", None)
        if family not in FAMILIES:
            return
        self._rid += 1
        requests = [("attention_distance", {}), ("attention_entropy", {})] if family != "detr" else \
            [("query_boxes", {})]
        if family == "vit":
            requests += [("position_similarity", {}),
                         ("dino_masks", {"threshold": round(self.threshold.value(), 4),
                                         "layer": self.mask_layer.value()}),
                         ("patch_filters", {"k": 28})]
            if self._norms_missing():
                requests.append(("token_norms", {}))
        self.status.setText(f"Computing the analyses of {self.analysis.model_name}…")
        self._drop_pending()  # requests not started yet are superseded by this one
        task = _Task(self._rid, self.analysis, requests, self._signals)
        _RUNNING.add(task)
        self._pool.start(task)

    def shutdown(self) -> None:
        """Drop pending requests and wait for the running one, cancel a folder run and wait for it
        (closing the window does it)."""
        self._drop_pending()
        self.folder_bar.shutdown()
        self._pool.waitForDone()

    def _drop_pending(self) -> None:
        self._pool.clear()
        for task in [t for t in _RUNNING if t.signals is self._signals and not t.started]:
            _RUNNING.discard(task)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    @QtCore.Slot(int, object)
    def _on_done(self, rid: int, results: dict) -> None:
        if rid != self._rid:
            return  # superseded
        self.results.update(results)
        self._draw_scatter()
        self._draw_position()
        self._draw_masks()
        self._draw_norms()
        self._draw_filters()
        self._draw_queries()
        a = self.analysis
        errors = [f"{k}: {v}" for k, v in results.items()
                  if isinstance(v, str) and k != "patch_filters"]  # a conv stem has none: its tab says so
        if a.family == "vit":
            what = (f"{a.num_layers} layers x {a.num_heads} heads, {a.grid.rows}x{a.grid.cols} patches, "
                    f"{a.num_prefix_tokens} prefix token(s)")
        elif a.family == "detr":
            what = f"{len(a.boxes)} query slots"
        else:
            what = f"{len(a.blocks)} blocks over {a.num_stages} stages, distances inside the windows"
        self.status.setText(f"{a.model_name} ({a.weights}), {what}" + ("; " + "; ".join(errors) if errors else ""))
        self.resultsShown.emit()

    # -------------------------------------------------------------------------------- drawing

    def _scatter_values(self) -> tuple[np.ndarray | None, str]:
        name = "attention_entropy" if self.entropy_box.isChecked() else "attention_distance"
        v = self.results.get(name)
        label = "attention entropy (nats)" if name == "attention_entropy" else "mean attention distance (input px)"
        if self.showing_folder:
            v = self.folder.means.get(name)
            label += f", {len(self.folder.sources)} images"
        return (v if isinstance(v, np.ndarray) else None), label

    # ----------------------------------------------------------------------------- folder runs

    @property
    def showing_folder(self) -> bool:
        return self.folder is not None and self.source_box.currentIndex() == FOLDER

    def _set_folder(self, res) -> None:
        self.folder = res if res is not None and res.sources else None
        item = self.source_box.model().item(FOLDER)
        item.setEnabled(self.folder is not None)
        item.setText(f"the folder ({len(self.folder.sources)} images)" if self.folder else "a folder (none analysed)")
        self.source_box.setCurrentIndex(FOLDER if self.folder is not None else IMAGE)

    @QtCore.Slot(object)
    def _on_folder_done(self, res) -> None:
        """A folder run ended (finished or cancelled): show its means, if any image was read."""
        self._set_folder(res)
        self._on_source_change()

    def _on_source_change(self, *_):
        self._draw_scatter()
        self._draw_queries()

    def _draw_queries(self) -> None:
        from ..core.analysis.detr_queries import QuerySpecialisation, specialisation

        if getattr(self.analysis, "family", None) != "detr":
            return
        if self.showing_folder and "query_boxes" in self.folder.per_image:
            self.detr_view.set_specialisation(specialisation(self.folder), f"over {len(self.folder.sources)} "
                                              "images of the folder")
            return
        boxes = self.results.get("query_boxes")
        if isinstance(boxes, np.ndarray):
            self.detr_view.set_specialisation(QuerySpecialisation(boxes[None], ["the image on screen"], 0.7),
                                              "on the image on screen")

    def dot_positions(self) -> list[tuple[float, float, int, int]]:
        """(x, y, layer, head) of every dot, as drawn."""
        v, _ = self._scatter_values()
        if v is None:
            return []
        L, H = v.shape
        offs = (np.arange(H) - (H - 1) / 2) * (SPREAD / max(H, 1))
        return [(layer + offs[h], float(v[layer, h]), layer, h) for layer in range(L) for h in range(H)
                if np.isfinite(v[layer, h])]  # Swin: NaN where a stage has fewer heads

    def _draw_scatter(self) -> None:
        v, label = self._scatter_values()
        self.scatter.clear()
        if v is None:
            return
        dots = self.dot_positions()
        brushes = self._head_brushes(v.shape[1])
        self.scatter.setData(x=[d[0] for d in dots], y=[d[1] for d in dots], data=[(d[2], d[3]) for d in dots],
                             brush=[brushes[d[3]] for d in dots], pen=self._dot_pen)
        axes = (label, "block" if self.analysis.family == "swin" else "layer", v.shape[0])
        if axes != getattr(self, "_scatter_axes", None):  # relaying out the axes costs more than the dots
            self._scatter_axes = axes
            self.scatter_plot.setLabel("left", axes[0])
            self.scatter_plot.setLabel("bottom", axes[1])
            self.scatter_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(axes[2])]])
        ys = v[np.isfinite(v)]
        pad = max(0.05 * (ys.max() - ys.min()), 0.04 * abs(ys.max()), 1e-3)  # dots clear of the frame
        self.scatter_plot.setRange(xRange=(-0.6, v.shape[0] - 0.4), yRange=(min(0.0, ys.min() - pad), ys.max() + pad),
                                   padding=0)

    def _head_brushes(self, heads: int) -> list:
        """One brush per head, kept: the scatter's symbol atlas renders each (pen, brush) once."""
        if len(getattr(self, "_brushes", ())) != heads:
            self._brushes = [pg.mkBrush(pg.intColor(h, hues=max(heads, 2), values=1, maxValue=230))
                             for h in range(heads)]
            self._dot_pen = pg.mkPen(0, 0, 0, 160)
        return self._brushes

    def value_text(self, layer: int, head: int) -> str:
        v, _ = self._scatter_values()
        unit = "nats" if self.entropy_box.isChecked() else "px"
        what = "entropy" if self.entropy_box.isChecked() else "distance"
        depth = "block" if self.analysis.family == "swin" else "layer"
        return f"{depth} {layer}, head {head}: {what} {v[layer, head]:.2f} {unit}"

    def _on_hover(self, item, points, ev) -> None:
        if len(points):
            layer, head = points[0].data()
            self.hover_label.setText(self.value_text(layer, head))

    def _on_click(self, item, points, ev) -> None:
        if len(points):
            layer, head = points[0].data()
            self.hover_label.setText(self.value_text(layer, head) + " — shown in the main view")
            self.select.emit(int(layer), int(head))

    def _draw_position(self) -> None:
        sim = self.results.get("position_similarity")
        if isinstance(sim, np.ndarray):
            r, c = sim.shape[:2]
            self.position_grid.set_maps(sim, row_labels=[str(i) for i in range(r)],
                                        col_labels=[str(j) for j in range(c)])
            self.position_note.setText(f"Cosine similarity of each patch's position embedding with every "
                                       f"other patch's ({r}x{c} grid, as the forward used it); "
                                       f"tile (row, col) is that patch's map; click a tile to see it over the image.")
            self.show_patch_similarity(*(p if p < n else 0 for p, n in zip(self.patch, (r, c))))
        elif sim is not None:
            self.position_note.setText(f"No position-embedding similarity: {sim}")

    @QtCore.Slot(int, int)
    def show_patch_similarity(self, row: int, col: int) -> None:
        """Patch (row, col)'s position-embedding similarity over the model input, beside the tiles."""
        sim = self.results.get("position_similarity")
        if not isinstance(sim, np.ndarray):
            return
        from ..core.colormaps import overlay_rgba

        self.patch = (row, col)
        a = self.analysis
        img = a.input_image()
        h, w = img.shape[:2]
        self.patch_photo.setImage(img, levels=(0, 255))
        self.patch_photo.setRect(QtCore.QRectF(0, 0, w, h))
        self.patch_overlay.setImage(overlay_rgba(sim[row, col], "viridis", -1.0, 1.0, 0.75), levels=(0, 255))
        self.patch_overlay.setRect(QtCore.QRectF(0, 0, a.grid.cols * a.grid.cell_w, a.grid.rows * a.grid.cell_h))
        self.patch_mark.setRect(QtCore.QRectF(col * a.grid.cell_w, row * a.grid.cell_h, a.grid.cell_w, a.grid.cell_h))
        self.patch_plot.setTitle(f"patch (row {row}, col {col}): cosine similarity, -1 to 1", color="w", size="9pt")
        self.patch_plot.vb.setRange(QtCore.QRectF(0, 0, w, h), padding=0.01)
        self.position_grid.set_selected(row, col)

    def _draw_masks(self) -> None:
        masks = self.results.get("dino_masks")
        for item in self.contours:
            self.masks_plot.removeItem(item)
        self.contours = []
        self.legend.clear()
        if not isinstance(masks, np.ndarray):
            return
        a = self.analysis
        img = a.input_image()
        self.masks_image.setImage(img, levels=(0, 255))
        self.masks_image.setRect(QtCore.QRectF(0, 0, img.shape[1], img.shape[0]))
        H = masks.shape[0]
        for h in range(H):
            seg = mask_outline(masks[h], a.grid.cell_w, a.grid.cell_h)
            colour = pg.intColor(h, hues=max(H, 2), values=1, maxValue=255)
            item = pg.PlotDataItem(seg[:, :, 0].ravel(), seg[:, :, 1].ravel(), connect="pairs",
                                   pen=pg.mkPen(colour, width=2), name=f"head {h} ({int(masks[h].sum())} patches)")
            self.masks_plot.addItem(item)
            self.contours.append(item)
        self.masks_plot.vb.setRange(QtCore.QRectF(0, 0, img.shape[1], img.shape[0]), padding=0.01)
        self.mask_grid.set_maps(masks[None].astype(np.float32), row_labels=["mask"],
                                col_labels=[str(h) for h in range(H)])


    def _draw_norms(self) -> None:
        norms = self.results.get("token_norms")
        if not isinstance(norms, np.ndarray):
            if norms is not None:
                self.norms_label.setText(f"No token norms: {norms}")
            return
        from ..core.analysis.token_norms import high_norm_tokens, prefix_names

        a = self.analysis
        layer = self.norm_layer.value() % norms.shape[0]
        v = norms[layer]
        p = a.num_prefix_tokens
        patches = v[p:].reshape(a.grid.rows, a.grid.cols)
        from ..core.colormaps import map_values

        self.norms_image.setImage(map_values("viridis", patches, float(patches.min()), float(patches.max())),
                                  levels=(0, 255))
        self.norms_image.setRect(QtCore.QRectF(0, 0, a.grid.cols, a.grid.rows))
        high = high_norm_tokens(v, p, HIGH_NORM) - p
        mask = np.zeros(a.grid.rows * a.grid.cols, bool)
        mask[high] = True
        seg = mask_outline(mask.reshape(a.grid.rows, a.grid.cols), 1.0, 1.0)
        self.outliers.setData(seg[:, :, 0].ravel(), seg[:, :, 1].ravel(), connect="pairs")
        self.norms_plot.vb.setRange(QtCore.QRectF(0, 0, a.grid.cols, a.grid.rows), padding=0.02)
        counts, edges = np.histogram(v, bins=max(10, min(60, v.size // 4)))
        self.hist.setData(edges, counts)
        for item in self.prefix_lines:
            self.hist_plot.removeItem(item)
        names = prefix_names(a)
        self.prefix_lines = [pg.InfiniteLine(v[i], angle=90, pen=pg.mkPen("#ffb000" if i else "w", width=1.5),
                                             label=names[i], labelOpts={"position": 0.9 - 0.08 * i, "color": "w"})
                             for i in range(p)]
        for item in self.prefix_lines:
            self.hist_plot.addItem(item)
        prefix = ", ".join(f"{names[i]} {v[i]:.1f}" for i in range(p))
        self.norms_label.setText(
            f"Layer {layer} output, ||x||: patches median {np.median(v[p:]):.1f}, max {v[p:].max():.1f}; "
            f"{len(high)} high-norm patch(es) (> {HIGH_NORM:g}x median) outlined in red. Prefix: {prefix}.")


    def _draw_filters(self) -> None:
        comps = self.results.get("patch_filters")
        if not isinstance(comps, np.ndarray):
            self.filters_note.setText(f"No patch-embedding filters: {comps}" if comps else "")
            self.filters_image.clear()
            return

        k, ph, pw, _ = comps.shape
        rows = -(-k // FILTERS_PER_ROW)
        tiles = np.zeros((rows * FILTERS_PER_ROW, ph, pw, 4), np.uint8)
        tiles[:k, ..., :3] = np.floor(comps * 255 + 0.5).astype(np.uint8)
        tiles[:k, ..., 3] = 255
        img = composite(tiles.reshape(rows, FILTERS_PER_ROW, ph, pw, 4), gap=2)
        self.filters_image.setImage(img, levels=(0, 255))
        self.filters_image.setRect(QtCore.QRectF(0, 0, img.shape[1], img.shape[0]))
        self.filters_plot.vb.setRange(QtCore.QRectF(0, 0, img.shape[1], img.shape[0]), padding=0.02)
        self.filters_note.setText(f"The first {k} principal components of the {ph}x{pw} patch-embedding filters "
                                  f"(RGB, each scaled to its own range), largest first, row by row.")


def open_analyses_window(parent, analysis=None) -> AnalysesWindow:
    """The AnalysesWindow of `parent` (made once, then raised), showing `analysis` when given."""
    from .tool_windows import open_tool_window

    return open_tool_window(parent, AnalysesWindow, analysis)
