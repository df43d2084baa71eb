"""Display settings shared by every view: colormap, opacity, overlay mode, grid. Remembered between
sessions."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ...core.colormaps import OVERLAYS
from ..colormaps import COLORMAPS, DEFAULT_COLORMAP

OVERLAY_CHOICES = (("blend", "Colours (blended)"), ("alpha", "One colour, value = opacity"))


class DisplayControls(QtWidgets.QGroupBox):
    changed = QtCore.Signal()

    def __init__(self, settings: QtCore.QSettings | None = None, parent=None):
        super().__init__("Display", parent)
        self._settings = settings
        self.cmap_combo = QtWidgets.QComboBox()
        self.cmap_combo.addItems(COLORMAPS)
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.overlay_combo = QtWidgets.QComboBox()
        for key, text in OVERLAY_CHOICES:
            self.overlay_combo.addItem(text, key)
        self.overlay_combo.setToolTip(
            "Colours: the colormap's colour mixed with the photo at the opacity (on a colourful photo the\n"
            "mix shows colours that are not on the bar). One colour: its opacity is the value, so the\n"
            "bar reads as 'how much colour' whatever the photo beneath.")
        self.grid_check = QtWidgets.QCheckBox("Show token grid (G)")
        form = QtWidgets.QFormLayout(self)
        form.addRow("Colormap", self.cmap_combo)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("Overlay", self.overlay_combo)
        form.addRow(self.grid_check)
        s = settings
        self.cmap_combo.setCurrentText(str(s.value("display/colormap", DEFAULT_COLORMAP)) if s else DEFAULT_COLORMAP)
        if self.cmap_combo.currentText() not in COLORMAPS:
            self.cmap_combo.setCurrentText(DEFAULT_COLORMAP)
        self.opacity_slider.setValue(int(s.value("display/opacity", 60)) if s else 60)
        self.grid_check.setChecked(str(s.value("display/grid", "true")).lower() == "true" if s else True)
        overlay = str(s.value("display/overlay", "blend")) if s else "blend"
        self.overlay_combo.setCurrentIndex(max(0, self.overlay_combo.findData(overlay if overlay in OVERLAYS else "blend")))
        self.cmap_combo.currentTextChanged.connect(self._on_change)
        self.overlay_combo.currentIndexChanged.connect(self._on_change)
        self.opacity_slider.valueChanged.connect(self._on_change)
        self.grid_check.toggled.connect(self._on_change)
        from .panel_common import shrinkable_combos

        shrinkable_combos(self)

    @property
    def colormap(self) -> str:
        return self.cmap_combo.currentText()

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    @property
    def show_grid(self) -> bool:
        return self.grid_check.isChecked()

    @property
    def overlay(self) -> str:
        return self.overlay_combo.currentData()

    def settings(self) -> dict:
        return {"colormap": self.colormap, "opacity": self.opacity, "overlay": self.overlay, "grid": self.show_grid}

    def _on_change(self, *_):
        if self._settings is not None:
            self._settings.setValue("display/colormap", self.colormap)
            self._settings.setValue("display/opacity", self.opacity_slider.value())
            self._settings.setValue("display/grid", self.show_grid)
            self._settings.setValue("display/overlay", self.overlay)
        self.changed.emit()
