"""Helpers for GUI tests: a main window with isolated settings, waiting for results."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui


def make_window(qtbot, tmp_path, model="test_tiny_vit", weights="random"):
    import os

    os.environ["VITVIZ_NO_DIALOGS"] = "1"
    from vitviz.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    win = MainWindow(model=model, weights=weights, settings=settings)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def open_and_wait(qtbot, win, path, timeout=60000):
    with qtbot.waitSignal(win.analysisShown, timeout=timeout) as blocker:
        assert win.open_path(str(path))
    return blocker.args[0]


def pixel_at(view, x, y) -> np.ndarray:
    """RGB of the rendered view at original-image pixel (x, y)."""
    img: QtGui.QImage = view.grab().toImage()
    p = view.view_to_widget(x, y)
    ratio = img.devicePixelRatio()
    c = img.pixelColor(int(p.x() * ratio), int(p.y() * ratio))
    return np.array([c.red(), c.green(), c.blue()])
