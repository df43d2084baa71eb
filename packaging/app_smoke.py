"""Launch vitviz exactly as its entry point does, check it, grab the window, and quit.

Used to check an installed app (a wheel in a fresh venv, the PyInstaller bundle) without a person:

    python packaging/app_smoke.py OUT.png [vitviz arguments: IMAGE... --model M --weights W]
    VITVIZ_SMOKE=OUT.png dist/vitviz/vitviz [vitviz arguments]     # the frozen app

It calls vitviz.__main__.main(argv), the function behind the `vitviz` gui-script, `vitviz-cli` and
`python -m vitviz`, with a QApplication made beforehand (run_app reuses it) and a timer that waits for
the first analysis on screen, saves a screenshot to OUT.png, steps to the next image when several were
given (Alt+Right), waits for that analysis too, then quits. OUT.json gets what was seen:

    {"ok": true, "window_s": ..., "first_analysis_s": ..., "images": [...], "shown": [...], ...}

Times count from VITVIZ_SMOKE_T0 (time.time() taken by whoever launched the process) when given,
else from when this module was imported. Qt platform: offscreen unless QT_QPA_PLATFORM says otherwise.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

T_IMPORT = time.time()
TIMEOUT_S = float(os.environ.get("VITVIZ_SMOKE_TIMEOUT", "300"))


def run(out_png: str, argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VITVIZ_NO_DIALOGS", "1")  # errors to the status bar (and to us), not a modal
    t0 = float(os.environ.get("VITVIZ_SMOKE_T0") or T_IMPORT)
    from PySide6 import QtCore, QtWidgets

    report: dict = {"ok": False, "argv": argv, "shown": [], "errors": []}
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])

    class Driver(QtCore.QObject):
        def __init__(self):
            super().__init__()
            self.win = None
            self.wanted = 1

        @QtCore.Slot()
        def attach(self) -> None:
            from vitviz.gui.main_window import MainWindow

            wins = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
            if not wins:
                return self.fail("no MainWindow after start-up")
            self.win = wins[0]
            report["window_s"] = round(time.time() - t0, 3)
            import vitviz
            from vitviz.core.resources import resource_dir

            report["vitviz_version"] = vitviz.__version__
            report["vitviz_file"] = vitviz.__file__
            report["resource_dir"] = str(resource_dir())
            report["window_title"] = self.win.windowTitle()
            report["window_icon_sizes"] = [s.width() for s in app.windowIcon().availableSizes()]
            report["window_icon_null"] = app.windowIcon().isNull()
            report["desktop_file_name"] = app.desktopFileName()
            self.win.analysisShown.connect(self.on_shown)
            self.win.runner.errorRaised.connect(self.on_error)

        @QtCore.Slot(object)
        def on_shown(self, analysis) -> None:
            win = self.win
            report["shown"].append({
                "t_s": round(time.time() - t0, 3), "image": win.image_path, "model": analysis.model_name,
                "family": analysis.family, "trained": bool(analysis.trained)})
            if len(report["shown"]) == 1:
                report["first_analysis_s"] = report["shown"][0]["t_s"]
                report["images"] = list(win.images.paths)
                # the offscreen screen is 800x600: a geometry saved by an earlier run is clamped to it
                win.resize(1400, 860)
                QtWidgets.QApplication.processEvents()
                win.grab().save(out_png)
                report["screenshot"] = out_png
                if len(win.images.paths) > 1:
                    self.wanted = 2
                    # the menu action behind Alt+Right
                    QtCore.QTimer.singleShot(0, lambda: win.step_image(1))
            if len(report["shown"]) >= self.wanted:
                report["ok"] = not report["errors"]
                self.finish(0)

        @QtCore.Slot(str)
        def on_error(self, message: str) -> None:
            self.fail(f"analysis failed: {message}")

        @QtCore.Slot()
        def watch(self) -> None:
            """An error the window showed (status bar, or a message box that would wait for a
            person): record it and stop."""
            box = QtWidgets.QApplication.activeModalWidget()
            if isinstance(box, QtWidgets.QMessageBox):
                text = f"dialog: {box.windowTitle()}: {box.text()}"
                box.reject()
                return self.fail(text)
            error = getattr(self.win, "last_error", None)
            if error:
                self.fail(f"window error: {error}")

        def fail(self, message: str) -> None:
            report["errors"].append(message)
            self.finish(3)

        def finish(self, code: int) -> None:
            if self.win is not None:
                self.win.close()  # stops the inference thread before the app goes
            QtWidgets.QApplication.exit(code)

    driver = Driver()

    def excepthook(kind, value, tb):  # an exception in a slot: Qt prints it and carries on; we stop
        report["errors"].append("".join(traceback.format_exception(kind, value, tb)))
        QtCore.QTimer.singleShot(0, lambda: driver.finish(4))

    sys.excepthook = excepthook
    QtCore.QTimer.singleShot(0, driver.attach)  # fires first thing inside run_app's app.exec()
    watch_timer = QtCore.QTimer(interval=250)
    watch_timer.timeout.connect(driver.watch)
    watch_timer.start()
    QtCore.QTimer.singleShot(int(TIMEOUT_S * 1000), lambda: driver.fail(f"timeout after {TIMEOUT_S} s"))
    from vitviz.__main__ import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse (--help, --version, bad arguments)
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # noqa: BLE001 (reported, not hidden)
        report["errors"].append(traceback.format_exc())
        code = 1
    report["exit_code"] = code
    report["total_s"] = round(time.time() - t0, 3)
    if code and report["ok"]:
        report["ok"] = False
    with open(os.path.splitext(out_png)[0] + ".json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    print(json.dumps(report))
    return 0 if report["ok"] else (code or 1)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
