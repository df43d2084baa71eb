"""File > Export…: the export dialog, Ctrl+E, and Ctrl+C (copy the current view as an image).

Works with any panel that has export_sources() (see vitviz.gui.export)."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from .export import (FORMATS, ExportContext, ExportError, ExportRequest, ExportSources, MapView, TileGrid,
                     export_sources_to_file, figure_qimage)

KINDS = (("view", "One view"), ("comparison", "Views side by side (one colour scale)"),
         ("grid", "Heads × layers grid"))


def parse_indices(text: str, n: int) -> list[int] | None:
    """"all" / "" -> None; "0-3, 7" -> [0, 1, 2, 3, 7]; ValueError naming what is wrong."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise ValueError(f"{part!r} is not a number or a range like 2-5")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    bad = [i for i in out if i >= n]
    if bad:
        raise ValueError(f"{bad[0]} is out of range (0..{n - 1})")
    return out


class ExportDialog(QtWidgets.QDialog):
    """Choose what to export and how; request() and path() give the answer."""

    def __init__(self, sources: ExportSources, kind: str = "view", path: str = "", parent=None,
                 save=None, name_for=None):
        """`save(dialog) -> path` writes the file (an error keeps the dialog open, settings as they
        were); `name_for(views, fmt) -> file name` names the file after the figure chosen."""
        super().__init__(parent)
        self.setWindowTitle("Export figure")
        self.sources = sources
        self.save, self.name_for = save, name_for
        self.saved_path: str | None = None
        self._auto_name = os.path.basename(path)  # the name we chose; one the user typed is kept
        self.maps = [n for n, v in sources.views.items() if isinstance(v, MapView)]
        self.grids = [n for n, v in sources.views.items() if isinstance(v, TileGrid)]

        self.kind_combo = QtWidgets.QComboBox()
        for key, text in KINDS:
            if key != "grid" or self.grids:
                self.kind_combo.addItem(text, key)
        self.pages = QtWidgets.QStackedWidget()

        # one view
        self.view_combo = QtWidgets.QComboBox()
        for n in self.maps:
            self.view_combo.addItem(f"{n} — {sources.views[n].title}", n)
        current = sources.current if sources.current in self.maps else (self.maps[0] if self.maps else "")
        self.view_combo.setCurrentIndex(max(0, self.view_combo.findData(current)))
        page = QtWidgets.QWidget()
        view_form = QtWidgets.QFormLayout(page)
        view_form.addRow("View", self.view_combo)
        self.pages.addWidget(page)

        # comparison
        self.compare_list = QtWidgets.QListWidget()
        self.compare_list.setMaximumHeight(150)
        for n in self.maps:
            item = QtWidgets.QListWidgetItem(f"{n} — {sources.views[n].title}")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, n)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Checked if n in ("attention", "rollout")
                               else QtCore.Qt.CheckState.Unchecked)
            self.compare_list.addItem(item)
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        lay.addWidget(QtWidgets.QLabel("Panels, left to right, on one shared colour scale:"))
        lay.addWidget(self.compare_list)
        self.pages.addWidget(page)

        # grid
        self.grid_combo = QtWidgets.QComboBox()
        for n in self.grids:
            self.grid_combo.addItem(sources.views[n].title, n)
        self.rows_edit = QtWidgets.QLineEdit("all")
        self.cols_edit = QtWidgets.QLineEdit("all")
        self.tile_scale = QtWidgets.QComboBox()
        self.tile_scale.addItem("Each tile on its own scale (min–max per tile)", "tile")
        self.tile_scale.addItem("One shared scale for all tiles", "shared")
        self.tile_scale.setToolTip("Per-tile scaling shows every head's pattern but brightness is not "
                                   "comparable between tiles; a shared scale is comparable but may leave "
                                   "weak heads dark.")
        page = QtWidgets.QWidget()
        form = grid_form = QtWidgets.QFormLayout(page)
        form.addRow("Grid", self.grid_combo)
        self.rows_label, self.cols_label = QtWidgets.QLabel(), QtWidgets.QLabel()
        form.addRow(self.rows_label, self.rows_edit)
        form.addRow(self.cols_label, self.cols_edit)
        form.addRow("Scale", self.tile_scale)
        self.pages.addWidget(page)
        self.grid_combo.currentIndexChanged.connect(self._on_grid_change)
        self._on_grid_change()

        # how
        self.format_combo = QtWidgets.QComboBox()
        for f in FORMATS:
            self.format_combo.addItem(f.upper(), f)
        self.width_spin = QtWidgets.QSpinBox()
        self.width_spin.setRange(0, 30000)
        self.width_spin.setSingleStep(100)
        self.width_spin.setSpecialValueText("from DPI")
        self.width_spin.setSuffix(" px")
        self.width_spin.setToolTip("PNG width in pixels (0: use the DPI)")
        self.dpi_spin = QtWidgets.QSpinBox()
        self.dpi_spin.setRange(24, 1200)
        self.dpi_spin.setValue(192)
        self.dpi_spin.setSuffix(" dpi")
        self.aspect_combo = QtWidgets.QComboBox()
        self.aspect_combo.addItem("Fit the content", "auto")
        self.aspect_combo.addItem("16:9 slide", "16:9")
        self.theme_combo = QtWidgets.QComboBox()
        self.theme_combo.addItem("Light (slides, paper)", "light")
        self.theme_combo.addItem("Dark (as on screen)", "dark")
        self.title_check = QtWidgets.QCheckBox("Title")
        self.colorbar_check = QtWidgets.QCheckBox("Colour bar")
        self.caption_check = QtWidgets.QCheckBox("Caption (image, model, weights, method, scale)")
        for c in (self.title_check, self.colorbar_check, self.caption_check):
            c.setChecked(True)
        self.zoom_check = QtWidgets.QCheckBox("Only the region shown on screen (as zoomed)")
        self.path_edit = QtWidgets.QLineEdit(path)
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QtWidgets.QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.error_label = QtWidgets.QLabel()
        self.error_label.setStyleSheet("color:#b3261e")
        self.error_label.setWordWrap(True)

        form = QtWidgets.QFormLayout()
        form.addRow("Figure", self.kind_combo)
        form.addRow(self.pages)
        form.addRow("Format", self.format_combo)
        form.addRow("PNG width", self.width_spin)
        form.addRow("PNG resolution", self.dpi_spin)
        form.addRow("Shape", self.aspect_combo)
        form.addRow("Colours", self.theme_combo)
        inc = QtWidgets.QHBoxLayout()
        for c in (self.title_check, self.colorbar_check, self.caption_check):
            inc.addWidget(c)
        form.addRow("Include", inc)
        form.addRow(self.zoom_check)
        form.addRow("File", path_row)
        _align_labels(form, (view_form, grid_form))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Save
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_accept)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error_label)
        lay.addWidget(buttons)

        self.kind_combo.currentIndexChanged.connect(self._on_kind_change)
        self.format_combo.currentIndexChanged.connect(self._on_format_change)
        for combo in (self.view_combo, self.grid_combo):
            combo.currentIndexChanged.connect(self._rename)
        self.compare_list.itemChanged.connect(self._rename)
        self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(kind)))
        self._on_kind_change()
        fmt = Path(path).suffix.lstrip(".").lower()
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(fmt)))
        self._on_format_change()

    # -- state ---------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.kind_combo.currentData()

    def _on_kind_change(self, *_):
        index = [k for k, _ in KINDS].index(self.kind)
        self.pages.setCurrentIndex(index)
        # a stack is as tall as its tallest page: size it to the page shown (no gap in the form)
        for i in range(self.pages.count()):
            policy = QtWidgets.QSizePolicy.Policy.Preferred if i == index else QtWidgets.QSizePolicy.Policy.Ignored
            self.pages.widget(i).setSizePolicy(policy, policy)
        self.pages.adjustSize()
        self.adjustSize()
        self.zoom_check.setEnabled(self.kind != "grid")
        self._rename()

    def _rename(self, *_):
        """The file is named after the figure (unless the user named it)."""
        p = self.path_edit.text().strip()
        views = [v for v in self.views() if v]
        if self.name_for is None or not p or not views or os.path.basename(p) != self._auto_name:
            return
        self._auto_name = self.name_for(views, Path(p).suffix.lstrip(".") or self.format_combo.currentData())
        self.path_edit.setText(os.path.join(os.path.dirname(p), self._auto_name))

    def _on_grid_change(self, *_):
        g = self.sources.views.get(self.grid_combo.currentData())
        if g is not None:
            self.rows_label.setText(f"{g.row_name.capitalize()}s (0..{g.maps.shape[0] - 1})")
            self.cols_label.setText(f"{g.col_name.capitalize()}s (0..{g.maps.shape[1] - 1})")

    def _on_format_change(self, *_):
        fmt = self.format_combo.currentData()
        png = fmt == "png"
        self.width_spin.setEnabled(png)
        self.dpi_spin.setEnabled(png)
        p = self.path_edit.text().strip()
        if p:
            auto = os.path.basename(p) == self._auto_name
            self.path_edit.setText(str(Path(p).with_suffix("." + fmt)))
            if auto:
                self._auto_name = os.path.basename(self.path_edit.text())

    def _browse(self) -> None:
        fmt = self.format_combo.currentData()
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export figure", self.path_edit.text(),
                                                        f"{fmt.upper()} (*.{fmt})")
        if path:
            self.path_edit.setText(path if Path(path).suffix else f"{path}.{fmt}")

    def views(self) -> list[str]:
        if self.kind == "view":
            return [self.view_combo.currentData()]
        if self.kind == "grid":
            return [self.grid_combo.currentData()]
        items = (self.compare_list.item(i) for i in range(self.compare_list.count()))
        return [it.data(QtCore.Qt.ItemDataRole.UserRole) for it in items
                if it.checkState() == QtCore.Qt.CheckState.Checked]

    def path(self) -> str:
        return self.path_edit.text().strip()

    def request(self) -> ExportRequest:
        """The ExportRequest the dialog describes; ValueError with a message for the user."""
        views = self.views()
        if not views or views == [None]:
            raise ValueError("Choose at least one view")
        req = ExportRequest(
            views=views, format=self.format_combo.currentData(), width=self.width_spin.value() or None,
            dpi=float(self.dpi_spin.value()), aspect=self.aspect_combo.currentData(),
            theme=self.theme_combo.currentData(), title=self.title_check.isChecked(),
            colorbar=self.colorbar_check.isChecked(), caption=self.caption_check.isChecked())
        if self.kind == "grid":
            g = self.sources.views[views[0]]
            req.rows = parse_indices(self.rows_edit.text(), g.maps.shape[0])
            req.cols = parse_indices(self.cols_edit.text(), g.maps.shape[1])
            req.tile_scale = self.tile_scale.currentData()
        elif self.zoom_check.isChecked():
            req.region = zoomed_region(self.sources.views[views[0]])
        return req

    def _on_accept(self) -> None:
        try:
            self.request()
        except ValueError as exc:
            self.error_label.setText(str(exc))
            return
        if not self.path():
            self.error_label.setText("Choose a file to write")
            return
        if self.save is not None:
            try:
                self.saved_path = self.save(self)
            except (ValueError, ExportError) as exc:  # stays open: fix the path and save again
                self.error_label.setText(f"Not saved: {exc}")
                return
        self.accept()


def _align_labels(outer: QtWidgets.QFormLayout, inner) -> None:
    """The pages' forms sit in one row of `outer`: give their labels its label column's width and no
    margins, so every label and field of the dialog lines up."""
    role = QtWidgets.QFormLayout.ItemRole.LabelRole

    def labels(form):
        items = (form.itemAt(r, role) for r in range(form.rowCount()))
        return [i.widget() for i in items if i is not None and i.widget() is not None]

    width = max(w.sizeHint().width() for w in labels(outer))
    for form in inner:
        form.setContentsMargins(0, 0, 0, 0)
        for w in labels(form):
            w.setMinimumWidth(width)


def zoomed_region(view: MapView) -> list[float] | None:
    """The part of the image the screen shows, within the image and map."""
    if view.view_rect is None:
        return None
    full, vr = view.full_rect(), view.view_rect
    r = [max(full[0], vr[0]), max(full[1], vr[1]), min(full[2], vr[2]), min(full[3], vr[3])]
    return r if r[2] > r[0] and r[3] > r[1] else None


# -- the main window's actions -------------------------------------------------------------------
def _current(window):
    """(sources, context) for the panel on screen, or None with a status message."""
    panel = window.stack.currentWidget()
    if window.analysis is None or not hasattr(panel, "export_sources"):
        window.statusBar().showMessage("Nothing to export yet: open an image first.", 6000)
        return None
    try:
        sources = panel.export_sources()
    except ExportError as exc:
        window.statusBar().showMessage(str(exc), 8000)
        return None
    ctx = ExportContext.from_analysis(window.analysis, window.shown_image_path, window.weights,
                                      window.shown_image_name)
    return sources, ctx


def export_folder(window) -> str:
    """The last export's folder, else the user's Pictures, else Documents, else home: never next to
    the source image (for a bundled scene that is inside the installed package)."""
    last = str(window.settings.value("paths/export_dir", ""))
    if last and os.path.isdir(last):
        return last
    from PySide6.QtCore import QStandardPaths as SP

    for where in (SP.StandardLocation.PicturesLocation, SP.StandardLocation.DocumentsLocation):
        folder = SP.writableLocation(where)
        if folder and os.path.isdir(folder):
            return folder
    return str(Path.home())


def file_name(window, views: list[str], fmt: str = "png") -> str:
    """<image>_<figure>.<fmt>: the figure is the view, the views side by side, or the grid."""
    stem = Path(window.shown_image_name or window.image_name or "figure").stem.replace(" ", "_")
    return f"{stem}_{'+'.join(v.replace(':', '') for v in views)}.{fmt}"


def default_path(window, views: list[str], fmt: str = "png") -> str:
    return os.path.join(export_folder(window), file_name(window, views, fmt))


def open_export_dialog(window, kind: str = "view") -> str | None:
    """Ask, export, report. Returns the written path (None if cancelled or failed)."""
    got = _current(window)
    if got is None:
        return None
    sources, ctx = got
    first = {"grid": [n for n, v in sources.views.items() if isinstance(v, TileGrid)][:1],
             "comparison": ["attention", "rollout"]}.get(kind) or [sources.current or "attention"]
    fmt = str(window.settings.value("export/format", "png"))
    dlg = ExportDialog(sources, kind, default_path(window, first, fmt), window,
                       save=lambda d: _save(window, d, sources, ctx),
                       name_for=lambda views, f: file_name(window, views, f))
    window.export_dialog = dlg  # tests drive it
    if dlg.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return None
    return dlg.saved_path


def _save(window, dlg: ExportDialog, sources, ctx) -> str:
    """Write what the dialog describes; ValueError / ExportError say why not."""
    request = dlg.request()
    result = export_sources_to_file(sources, request, ctx, dlg.path())
    window.settings.setValue("paths/export_dir", str(Path(result.path).parent))
    window.settings.setValue("export/format", request.format)
    window.statusBar().showMessage(f"Exported {result.path} (and {os.path.basename(result.sidecar)})", 8000)
    return result.path


def export_from_dialog(window, dlg: ExportDialog, sources=None, ctx=None) -> str | None:
    """Export what `dlg` describes; a failure is reported (dialog) and gives None."""
    if sources is None:
        got = _current(window)
        if got is None:
            return None
        sources, ctx = got
    try:
        return _save(window, dlg, sources, ctx)
    except (ValueError, ExportError) as exc:
        window._error_dialog("Export failed", str(exc))
        return None


def copy_view(window) -> bool:
    """Ctrl+C: the view with focus (else the main one) as an image on the clipboard."""
    got = _current(window)
    if got is None:
        return False
    sources, ctx = got
    name = sources.current if sources.current in sources.views else next(iter(sources.views))
    try:
        img = figure_qimage(sources, ExportRequest([name], dpi=192.0), ctx)
    except ExportError as exc:
        window._error_dialog("Copy failed", str(exc))
        return False
    QtWidgets.QApplication.clipboard().setImage(img)
    window.statusBar().showMessage(f"Copied the {name} view to the clipboard.", 6000)
    return True


def install_export_actions(window, menu: QtWidgets.QMenu) -> None:
    """File menu entries and shortcuts (Ctrl+E export, Ctrl+C copy)."""
    from .shortcuts import key_of

    menu.addSeparator()
    window._action(menu, "&Export view…", lambda: open_export_dialog(window, "view"), key_of("export"))
    window._action(menu, "Export views side by side…", lambda: open_export_dialog(window, "comparison"))
    window._action(menu, "Export heads × layers &grid…", lambda: open_export_dialog(window, "grid"))
    window._action(menu, "&Copy view as image", lambda: copy_view(window), key_of("copy"))
