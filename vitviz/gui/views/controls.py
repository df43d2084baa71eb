"""Display settings shared by every view: colormap, opacity, grid. Remembered between sessions."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..colormaps import COLORMAPS, DEFAULT_COLORMAP


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
        self.grid_check = QtWidgets.QCheckBox("Show token grid (G)")
        form = QtWidgets.QFormLayout(self)
        form.addRow("Colormap", self.cmap_combo)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow(self.grid_check)
        s = settings
        self.cmap_combo.setCurrentText(str(s.value("display/colormap", DEFAULT_COLORMAP)) if s else DEFAULT_COLORMAP)
        if self.cmap_combo.currentText() not in COLORMAPS:
            self.cmap_combo.setCurrentText(DEFAULT_COLORMAP)
        self.opacity_slider.setValue(int(s.value("display/opacity", 60)) if s else 60)
        self.grid_check.setChecked(str(s.value("display/grid", "true")).lower() == "true" if s else True)
        self.cmap_combo.currentTextChanged.connect(self._on_change)
        self.opacity_slider.valueChanged.connect(self._on_change)
        self.grid_check.toggled.connect(self._on_change)

    @property
    def colormap(self) -> str:
        return self.cmap_combo.currentText()

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    @property
    def show_grid(self) -> bool:
        return self.grid_check.isChecked()

    def settings(self) -> dict:
        return {"colormap": self.colormap, "opacity": self.opacity, "grid": self.show_grid}

    def _on_change(self, *_):
        if self._settings is not None:
            self._settings.setValue("display/colormap", self.colormap)
            self._settings.setValue("display/opacity", self.opacity_slider.value())
            self._settings.setValue("display/grid", self.show_grid)
        self.changed.emit()
