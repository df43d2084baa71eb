"""Start the desktop app: window first, torch later (in the worker thread)."""
from __future__ import annotations

import os
import sys


def run_app(images: list[str] | None = None, model: str | None = None, weights: str | None = None,
            device: str = "cpu") -> int:
    from PySide6 import QtGui, QtWidgets

    import warnings

    from ..core.models.errors import RandomWeightsWarning
    from ..core.resources import app_icon_files, sample_images
    from .crash_report import install as install_crash_report, open_settings
    from .main_window import MainWindow

    warnings.filterwarnings("ignore", category=RandomWeightsWarning)  # the window's banner says it

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("vitviz")
    app.setOrganizationName("vitviz")
    app.setDesktopFileName("vitviz")
    icon = QtGui.QIcon()
    for f in app_icon_files():  # hand-drawn small sizes, then the SVG for the rest
        icon.addFile(str(f))
    if not icon.isNull():
        app.setWindowIcon(icon)
    install_crash_report(app)  # an exception in any slot: a report (dialog + log), the session goes on
    settings, notice = open_settings()  # a damaged settings file: defaults and a one-line notice
    win = MainWindow(model=model, weights=weights, device=device, settings=settings)
    if notice:
        win.statusBar().showMessage(notice, 20000)
    # `vitviz bench` start-up rows only (off unless the variable is set): print timestamps at the
    # first window paint / first attention map painted, then exit. See vitviz/gui/startup_probe.py.
    if os.environ.get("VITVIZ_BENCH_STARTUP"):
        from .startup_probe import install_probe

        install_probe(app, win, os.environ["VITVIZ_BENCH_STARTUP"])
    win.show()
    # Open after the first paint, so the window is up before torch is imported.
    paths = images or [str(p) for p in sample_images()[:1]]
    if paths:
        _after_first_paint(app, win, lambda: win.set_image_list(paths))
    return app.exec()


def _after_first_paint(app, win, then, fallback_ms: int = 2000) -> None:
    """Call `then` once the window's first paint is over (or after `fallback_ms` if no paint comes,
    e.g. a platform that never exposes the window). A 0 ms timer alone can fire before the first
    paint, and the worker then imports torch while the window is still blank (the GIL is held for
    most of that import, so the paint waits for it)."""
    from PySide6 import QtCore

    class FirstPaint(QtCore.QObject):
        done = False

        def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
            if event.type() == QtCore.QEvent.Type.Paint and obj.isWidgetType() and obj.window() is win:
                app.removeEventFilter(self)
                QtCore.QTimer.singleShot(0, self.fire)  # runs when this paint pass has finished
            return False

        def fire(self) -> None:
            if not self.done:
                self.done = True
                app.removeEventFilter(self)
                then()

    win._first_paint_filter = f = FirstPaint(win)
    app.installEventFilter(f)
    QtCore.QTimer.singleShot(fallback_ms, f.fire)
