"""The main window: menus, model picker, the family workspace (ViT / Swin / DETR), status bar."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..core.image import ImageLoadError, load_image
from ..core.models.registry import get_spec
from .download import DownloadController
from .image_list import ImageList
from .model_picker import ModelPicker, format_mb
from .notice_bar import NoticeBar
from .shortcuts import key_of
from .status_bar import StatusBar
from .views.controls import DisplayControls
from .worker import AnalysisRunner

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp);;All files (*)"


def default_model() -> str:
    from ..core.api import DEFAULT_MODEL

    return DEFAULT_MODEL


class MainWindow(QtWidgets.QMainWindow):
    analysisShown = QtCore.Signal(object)  # after a new result is on screen (tests, benchmark)

    def __init__(self, model: str | None = None, weights: str | None = None, device: str | None = None,
                 settings: QtCore.QSettings | None = None):
        super().__init__()
        self.setWindowTitle("vitviz")
        self.setAcceptDrops(True)
        self.settings = settings or QtCore.QSettings("vitviz", "vitviz")
        self.model = model or str(self.settings.value("model/name", default_model()))
        try:
            get_spec(self.model)
        except KeyError:
            self.model = default_model()
        self.weights = weights or str(self.settings.value("model/weights", "pretrained"))
        self.device = device or str(self.settings.value("model/device", "auto"))  # remembered by the picker
        self.image = None
        self.image_name = ""
        self.image_path: str | None = None
        self._submitted_image: tuple[str, str | None] = ("", None)
        self.shown_image_name, self.shown_image_path = "", None  # of the analysis on screen
        self.images = ImageList()  # what Alt+Left/Right steps through
        self.shortcuts_dialog = None  # Help > Keyboard shortcuts, made on first use
        self.analysis = None
        self._submitted_setup = self._shown_setup = None  # (model, weights) of the request / the result shown
        self.display = DisplayControls(self.settings)
        self.panels: dict[str, QtWidgets.QWidget] = {}
        self.runner = AnalysisRunner(self)
        self.runner.resultReady.connect(self._on_result)
        self.runner.errorRaised.connect(self._on_error)
        self.runner.busyChanged.connect(self._on_busy)

        self.banner = NoticeBar()
        self.banner.actionClicked.connect(self._on_banner_action)
        self._banner_download: str | None = None  # the model the banner's Download button fetches
        self.stack = QtWidgets.QStackedWidget()
        self.placeholder = QtWidgets.QLabel("Open an image (Ctrl+O), drop one here, or paste one (Ctrl+V).")
        self.placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.stack.addWidget(self.placeholder)
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self.downloads = DownloadController(self)  # pretrained weights: ask, fetch with progress, cancel
        if self.picker.last_notice:
            self._on_notice(self.picker.last_notice)
        geom = self.settings.value("window/geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        else:
            self.resize(1400, 860)

    # -- construction --------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        tb = self.toolbar = self.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setMovable(False)
        open_act = tb.addAction("Open…")
        open_act.triggered.connect(self.open_dialog)
        tb.addSeparator()
        # model (by family, with the state of its weights), weights (recent checkpoints), device
        self.picker = ModelPicker(self.settings, self.model, self.weights, self.device)
        self.device = self.picker.device  # a GPU that is not there falls back to auto
        self.model_combo, self.weights_combo = self.picker.model_combo, self.picker.weights_combo
        self.device_combo = self.picker.device_combo
        self.picker.modelChosen.connect(self.set_model)
        self.picker.deviceChosen.connect(self.set_device)
        self.picker.openCheckpointRequested.connect(self.open_checkpoint_dialog)
        self.picker.notice.connect(self._on_notice)
        tb.addWidget(self.picker)

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "&Open image…", self.open_dialog, key_of("open"))
        self._action(m, "Open &folder…", self.open_folder_dialog, key_of("open_folder"))
        self._action(m, "&Paste image", self.paste_image, key_of("paste"))
        samples = m.addMenu("Open &sample")
        from ..core.resources import sample_images

        for p in sample_images():
            self._action(samples, p.stem, lambda _=False, p=p: self.open_path(str(p)))
        self._action(m, "Next image", lambda: self.step_image(1), key_of("next_image"))
        self._action(m, "Previous image", lambda: self.step_image(-1), key_of("previous_image"))
        self.images_menu = m.addMenu("&Images")
        self.images_menu.setEnabled(False)
        self._action(m, "Open &checkpoint…", self.open_checkpoint_dialog)
        from .export_dialog import install_export_actions  # File > Export…, Ctrl+E, Ctrl+C

        install_export_actions(self, m)
        m.addSeparator()
        self._action(m, "&Quit", self.close, key_of("quit"))
        v = self.menuBar().addMenu("&View")
        self._action(v, "Next layer", lambda: self._on_panel(lambda p: p.step_layer(1)), key_of("next_layer"))
        self._action(v, "Previous layer", lambda: self._on_panel(lambda p: p.step_layer(-1)), key_of("previous_layer"))
        self._action(v, "Next head", lambda: self._on_panel(lambda p: p.step_head(1)), key_of("next_head"))
        self._action(v, "Previous head", lambda: self._on_panel(lambda p: p.step_head(-1)), key_of("previous_head"))
        self._action(v, "Toggle CLS query", lambda: self._on_panel(lambda p: p.toggle_cls()), key_of("toggle_cls"))
        self._action(v, "Toggle direction", lambda: self._on_panel(lambda p: p.toggle_direction()), key_of("toggle_direction"))
        self._action(v, "Toggle token grid", self.display.grid_check.toggle, key_of("toggle_grid"))
        self._action(v, "Side column", lambda: self._on_panel(lambda p: p.toggle_side()), key_of("toggle_side"))
        self._action(v, "&Fit view", lambda: self._on_panel(lambda p: p.fit_views()), key_of("fit_view"))
        self._action(v, "Show what the model sees", lambda: self._on_panel(lambda p: p.toggle_model_view()), key_of("model_view"))
        v.addSeparator()
        self._action(v, "&Analyses…", self.show_analyses, key_of("analyses"))
        self._action(v, "&Compare methods…", self.show_compare, key_of("compare"))
        self._action(v, "Explain this attention step by step…", self.show_walkthrough, key_of("walkthrough"))
        h = self.menuBar().addMenu("&Help")
        self._action(h, "Keyboard shortcuts", self.show_shortcuts, key_of("shortcuts"))
        self._action(h, "About vitviz", self.show_about)

    def _action(self, menu, text, slot, shortcut=None):
        act = QtGui.QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        self.addAction(act)  # shortcuts work even when the menu bar is hidden
        return act

    def _build_status(self) -> None:
        sb = StatusBar()
        self.setStatusBar(sb)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator
        self.progress.setMaximumWidth(160)
        self.progress.setVisible(False)
        self.busy_label = QtWidgets.QLabel()
        self.info_label = QtWidgets.QLabel()
        sb.insertWidget(0, self.busy_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.info_label)
        self._update_info()

    # -- opening images ------------------------------------------------------------------------
    def open_dialog(self) -> None:
        start = str(self.settings.value("paths/last_dir", str(Path.home())))
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(self, "Open image", start, IMAGE_FILTER)
        if paths:
            self.set_image_list(paths)

    def open_folder_dialog(self) -> None:
        start = str(self.settings.value("paths/last_dir", str(Path.home())))
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Open folder of images", start)
        if folder:
            self.set_image_list([folder])

    def set_image_list(self, paths: list[str]) -> bool:
        """Open the first image of `paths` that opens (folders stand for the images in them, sorted);
        the rest are stepped through with Alt+Left/Right."""
        from ..core.batch.folder import list_images

        files = list_images(paths)
        self.images.set(files)
        self._rebuild_image_menu()
        if not files:
            self._error_dialog("No images", f"There is no image file in {', '.join(map(str, paths))}.")
            return False
        return self.step_image(1)

    def step_image(self, delta: int) -> bool:
        """Show the next (delta 1) or previous (-1) image of the list that can be opened. A file that
        fails is reported once (a dialog), marked in the Images menu and skipped from then on."""
        skipped = []
        for i, path in self.images.candidates(delta):
            if self.open_path(path):
                if skipped:
                    self.statusBar().showMessage(f"Skipped {', '.join(skipped)}: could not be opened.", 8000)
                return True
            skipped.append(os.path.basename(path))
        if self.images.paths and self.image is not None:
            self.statusBar().showMessage("No other image in the list can be opened.", 6000)
        return False

    def open_path(self, path: str) -> bool:
        """Load and show an image file (a folder: its images become the list). On failure: a dialog;
        what was open stays."""
        if os.path.isdir(path):
            return self.set_image_list([path])
        try:
            img = load_image(path)
        except ImageLoadError as exc:
            if path in self.images.paths:
                self.images.fail(path, exc.reason)
                self._rebuild_image_menu()
            self._error_dialog("Cannot open image", str(exc))
            return False
        self.settings.setValue("paths/last_dir", str(Path(path).parent))
        self.image_path = path
        self.images.shown(path)
        self._set_image(img, os.path.basename(path))
        return True

    def _rebuild_image_menu(self) -> None:
        """File > Images: the list, the shown one checked, the ones that failed disabled and marked."""
        menu = self.images_menu
        menu.clear()
        menu.setEnabled(len(self.images.paths) > 1 or bool(self.images.failed))
        for i, path in enumerate(self.images.paths[:500]):  # a menu of thousands helps nobody
            why = self.images.failed.get(path)
            act = menu.addAction(os.path.basename(path) + (" — could not be opened" if why else ""))
            act.setCheckable(True)
            act.setChecked(i == self.images.index)
            act.setEnabled(why is None)
            act.setToolTip(why or path)
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))

    def open_bytes(self, data: bytes, name: str = "pasted image") -> bool:
        try:
            img = load_image(data, name=name)
        except ImageLoadError as exc:
            self._error_dialog("Cannot open image", str(exc))
            return False
        self.image_path = None
        self.images.shown(None)
        self._set_image(img, name)
        return True

    def paste_image(self) -> None:
        cb = QtWidgets.QApplication.clipboard()
        mime = cb.mimeData()
        if mime is not None and mime.hasUrls():
            files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if files:
                self.set_image_list(files)
                return
        qimg = cb.image()
        if qimg.isNull():
            self.statusBar().showMessage("The clipboard holds no image.", 5000)
            return
        buf = QtCore.QBuffer()
        buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
        qimg.save(buf, "PNG")
        self.open_bytes(bytes(buf.data()), "pasted image")

    def _set_image(self, img, name: str) -> None:
        self.image, self.image_name = img, name
        pos = self.images.position_text()
        self.setWindowTitle(f"{name}{f' ({pos})' if pos else ''} — vitviz")
        if self.images.paths:
            self._rebuild_image_menu()
        self.run()

    # -- models --------------------------------------------------------------------------------
    @QtCore.Slot(str, str)
    def set_model(self, name: str, weights: str | None = None) -> None:
        """Switch model and/or weights (shown at once; a run in progress is superseded)."""
        self.model = name
        if weights is not None:
            self.weights = weights
        self.settings.setValue("model/name", name)
        if self.weights in ("pretrained", "random"):
            self.settings.setValue("model/weights", self.weights)
        self.picker.set_current(self.model, self.weights, self.device)
        self.downloads.forget(name)  # an explicit choice: ask again if its weights are missing
        self._update_info()
        self.run()

    @QtCore.Slot(str)
    def set_device(self, device: str) -> None:
        self.device = device
        self.picker.set_current(self.model, self.weights, device)
        self._update_info()
        self.run()

    @QtCore.Slot(str)
    def _on_notice(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def open_checkpoint_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open checkpoint", str(Path.home()), "Checkpoints (*.pth *.pt *.safetensors);;All files (*)")
        if path:
            self.set_model(self.model, path)

    def restore_shown_setup(self) -> bool:
        """Back to the model and weights of the result on screen (after a failure); False if none."""
        if self._shown_setup is None:
            return False
        self.model, self.weights = self._shown_setup
        self.picker.set_current(self.model, self.weights, self.device)
        self._update_info(self.analysis)
        return True

    def run(self) -> int | None:
        """(Re)analyse the current image with the current model, in the worker thread."""
        if self.downloads.intercept(self.model, self.weights):
            return None  # asked; a download runs the model when it is done (or the choice was undone)
        if self.image is None:
            return None
        # only the latest request's result is ever delivered, so this is what a result belongs to
        self._submitted_setup = (self.model, self.weights)
        self._submitted_image = (self.image_name, self.image_path)
        return self.runner.submit(self.image, self.image_name, self.model, self.weights, self.device)

    # -- results -------------------------------------------------------------------------------
    def panel_for(self, family: str):
        if family not in self.panels:
            from ..core.families import get_family

            panel = get_family(family).panel_type()(self.display)
            panel.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 6000))
            self.panels[family] = panel
            self.stack.addWidget(panel)
        return self.panels[family]

    @QtCore.Slot(object)
    def _on_result(self, analysis) -> None:
        panel = self.panel_for(analysis.family)
        if self.display.parentWidget() is not panel.side_layout.parentWidget():
            # one set of display controls, shown in the active panel's side column
            panel.side_layout.insertWidget(panel.side_layout.count() - 1, self.display)
        self.stack.setCurrentWidget(panel)
        panel.set_analysis(analysis)
        self.analysis = analysis
        self._shown_setup = self._submitted_setup
        # what the shown result was computed from (the open image may have changed since)
        self.shown_image_name, self.shown_image_path = self._submitted_image
        if self._shown_setup is not None:
            self.picker.remember(*self._shown_setup)
            if self._shown_setup[1] == "pretrained" and not analysis.trained:
                # weights missing, found out by the worker (states were not known yet): offer them
                QtCore.QTimer.singleShot(0, lambda setup=self._shown_setup: self._offer_weights(*setup))
        self._show_notice(analysis)
        self._update_info(analysis)
        self.analysisShown.emit(analysis)

    @QtCore.Slot(str)
    def _on_error(self, message: str) -> None:
        self._error_dialog("Analysis failed", message + "\n\nThe previous result is still shown.")
        if self._submitted_setup and self._submitted_setup[1] == "pretrained":
            # e.g. a damaged cached file was moved aside: the picker offers the download again
            self.picker.refresh_states(background=False)
        self.restore_shown_setup()  # the model/weights that failed are not kept as current
        self._update_info(self.analysis)

    def _show_notice(self, analysis) -> None:
        """One line above the views: what runs and why, with a Download button when that is the fix."""
        notes = list(dict.fromkeys([*([analysis.input_note()] if analysis.input_note() else []), *analysis.notes]))
        self._banner_download = None
        if analysis.trained:
            self.banner.show_notice(notes[0] if notes else "", notes)
            return
        model = analysis.model_name
        try:
            label = get_spec(model).label
        except KeyError:  # a model inferred from a checkpoint
            label = model
        why = "the maps show how an untrained network mixes tokens, not what a trained model attends to"
        setup = self._shown_setup or (model, analysis.weights)
        if setup[1] == "pretrained":
            self.picker.refresh_states(background=False)  # the run found them missing: say so everywhere
        if setup[1] == "pretrained" and self.picker.state_of(model) == "downloadable":
            size = self.picker.size_of(model)
            self._banner_download = model
            self.banner.show_notice(f"Random weights: {label}'s pretrained weights are not downloaded, so {why}.",
                                    notes, f"Download ({format_mb(size)})" if size else "Download")
        elif setup[1] == "random":
            self.banner.show_notice(f"Random weights, as chosen: {why}.", notes)
        else:
            self.banner.show_notice(f"Random weights: {label} has no published weights, so {why}. Open a "
                                    "checkpoint (Weights box) for a trained model.", notes)

    @QtCore.Slot()
    def _on_banner_action(self) -> None:
        model = self._banner_download
        if model is not None and not self.downloads.busy_with(model):
            self.banner.button.setEnabled(False)
            self.downloads.start(model)  # runs the model again when done, if it is still the choice

    def _offer_weights(self, model: str, weights: str) -> None:
        if (self.model, self.weights) == (model, weights):
            self.downloads.intercept(model, weights)  # asks once; a download reruns the model

    @QtCore.Slot(bool, str)
    def _on_busy(self, busy: bool, text: str) -> None:
        if busy:
            self.picker.scan_once()  # torch is being imported for the run anyway: read weights states
        self.progress.setVisible(busy)
        self.busy_label.setText(text)

    def _update_info(self, analysis=None) -> None:
        if analysis is None:
            self.info_label.setText(f"{self.model} · {self.weights_label()} · {self.device}")
            return
        t = analysis.timings.get("forward")
        self.info_label.setText(
            f"{analysis.model_name} · {analysis.weights} · {analysis.device}"
            + (f" · inference {t * 1000:.0f} ms" if t is not None else ""))

    def weights_label(self) -> str:
        return self.weights if self.weights in ("pretrained", "random") else os.path.basename(self.weights)

    def _on_panel(self, command) -> None:
        """Run `command(panel)` on the family panel on screen (every panel has the base Panel's
        commands; one without a model view says so itself). Before the first result: nothing to do."""
        from .panel import Panel

        panel = self.stack.currentWidget()
        if isinstance(panel, Panel):
            command(panel)
        else:
            self.statusBar().showMessage("Open an image first (Ctrl+O): the views are empty.", 4000)

    # -- dialogs -------------------------------------------------------------------------------
    def _error_dialog(self, title: str, text: str) -> None:
        """Modal error, except under tests/offscreen automation where it goes to the status bar."""
        self.last_error = text
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        if os.environ.get("VITVIZ_NO_DIALOGS"):
            return
        QtWidgets.QMessageBox.warning(self, title, text)

    def show_shortcuts(self) -> None:
        from .shortcuts import ShortcutsDialog

        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def show_compare(self):
        """Methods side by side on the result on screen, with how faithful each is."""
        from .compare_window import CompareWindow

        return self._tool_window(CompareWindow)

    def show_walkthrough(self):
        """The lecture's self-attention, step by step, for the query, layer and head on screen."""
        from .walkthrough_window import open_walkthrough

        return open_walkthrough(self)

    def show_analyses(self):
        """The analyses window for the result on screen; clicking a head there shows it here."""
        from .analyses_window import AnalysesWindow

        return self._tool_window(AnalysesWindow, lambda win: win.select.connect(self._on_analyses_select))

    def _tool_window(self, window_type, connect=None):
        """The analyses or comparison window, following the results shown here."""
        from .tool_windows import open_tool_window

        first = self.findChild(window_type) is None
        win = open_tool_window(self, window_type, self.analysis)
        if first:
            self.analysisShown.connect(win.set_analysis)
            if connect is not None:
                connect(win)
        return win

    @QtCore.Slot(int, int)
    def _on_analyses_select(self, layer: int, head: int) -> None:
        """A dot of the distance/entropy scatter: that layer (Swin: block over all stages) and head."""
        a = self.analysis
        if a is None:
            return
        panel = self.panel_for(a.family)
        if a.family == "swin":
            b = a.blocks[layer]
            panel.update_state(stage=b.stage, block=b.block, head=head)
        else:
            panel.update_state(layer=layer, head=head)

    def show_about(self) -> None:
        from .. import __version__

        QtWidgets.QMessageBox.about(self, "About vitviz", f"vitviz {__version__}\nSee inside vision transformers.")

    # -- drag and drop, close ------------------------------------------------------------------
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        mime = event.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if files:
            self.set_image_list(files)
        elif mime.hasImage():
            qimg = QtGui.QImage(mime.imageData())
            buf = QtCore.QBuffer()
            buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
            qimg.save(buf, "PNG")
            self.open_bytes(bytes(buf.data()), "dropped image")
        event.acceptProposedAction()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt name)
        if self.picker.compact != (event.size().width() < 1000):
            self.picker.set_compact(event.size().width() < 1000)  # the toolbar fits, nothing behind "»"
            self.toolbar.layout().invalidate()
        super().resizeEvent(event)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.downloads.shutdown()
        self.runner.shutdown()
        super().closeEvent(event)
