"""Start the desktop app: window first, torch later (in the worker thread)."""
from __future__ import annotations

import sys


def run_app(images: list[str] | None = None, model: str | None = None, weights: str | None = None,
            device: str = "cpu") -> int:
    from PySide6 import QtCore, QtGui, QtWidgets

    from ..core.resources import resource_path, sample_images
    from .main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("vitviz")
    app.setOrganizationName("vitviz")
    app.setDesktopFileName("vitviz")
    icon = resource_path("icons", "vitviz.svg")
    if icon.is_file():
        app.setWindowIcon(QtGui.QIcon(str(icon)))
    win = MainWindow(model=model, weights=weights, device=device)
    win.show()
    # Open after the first paint, so the window is up before torch is imported.
    paths = images or [str(p) for p in sample_images()[:1]]
    if paths:
        QtCore.QTimer.singleShot(0, lambda: win.set_image_list(paths))
    return app.exec()
