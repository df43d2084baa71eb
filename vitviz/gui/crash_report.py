"""Uncaught exceptions (in any slot, event handler or thread): a report the user can copy, appended
to a log file in the user's data folder, and the session goes on.

PySide6 hands an exception raised in a slot or an overridden event handler to sys.excepthook and
carries on with the event loop; threads go through threading.excepthook. Both come here. The report
is shown in one non-modal dialog (later reports are appended to it) in the GUI thread; under
VITVIZ_NO_DIALOGS (tests, automation) no dialog, the status bar of the main window says where the
log is.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import threading
import traceback
from importlib import metadata

from PySide6 import QtCore, QtGui, QtWidgets

LOG_NAME = "crash.log"


def log_path() -> str:
    """<AppDataLocation>/crash.log (Linux: ~/.local/share/<org>/<app>/crash.log)."""
    folder = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.AppDataLocation)
    return os.path.join(folder or os.path.expanduser("~"), LOG_NAME)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def report_text(exc_type, exc, tb, where: str = "") -> str:
    """The copyable report: what ran where, then the traceback."""
    import PySide6

    from .. import __version__

    lines = [
        f"vitviz {__version__} — uncaught {exc_type.__name__}{f' in {where}' if where else ''}",
        f"time: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"platform: {platform.platform()} ({platform.machine()})",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"torch: {_version('torch')}, torchvision: {_version('torchvision')}, numpy: {_version('numpy')}",
        f"Qt: {QtCore.qVersion()}, PySide6: {PySide6.__version__}, pyqtgraph: {_version('pyqtgraph')}",
        "",
        "".join(traceback.format_exception(exc_type, exc, tb)).rstrip(),
    ]
    return "\n".join(lines) + "\n"


class CrashReporter(QtCore.QObject):
    """Lives in the GUI thread; `reported` is queued there from any thread."""

    reported = QtCore.Signal(str)

    def __init__(self, app: QtWidgets.QApplication, path: str | None = None):
        super().__init__(app)
        self.path = path or log_path()
        self.dialog: QtWidgets.QDialog | None = None
        self.count = 0
        self.last_report = ""
        self.log_error = ""  # why the log could not be written, if it could not
        self.reported.connect(self._show)

    # -- hooks -------------------------------------------------------------------------------------
    def excepthook(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        self.handle(exc_type, exc, tb)

    def threading_hook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        self.handle(args.exc_type, args.exc_value, args.exc_traceback,
                    f"thread {args.thread.name if args.thread else '?'}")

    def handle(self, exc_type, exc, tb, where: str = "") -> str:
        """Log and show one exception; never raises (a failing reporter must not take the app down)."""
        try:
            if not where and threading.current_thread() is not threading.main_thread():
                where = f"thread {threading.current_thread().name}"
            text = report_text(exc_type, exc, tb, where)
            sys.stderr.write(text)
            self._append_log(text)
            self.reported.emit(text)
            return text
        except Exception:  # noqa: BLE001 (last resort: the default hook's output)
            sys.__excepthook__(exc_type, exc, tb)
            return ""

    def _append_log(self, text: str) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text + "\n" + "-" * 72 + "\n")
            self.log_error = ""
        except OSError as exc:
            self.log_error = f"could not write {self.path}: {exc.strerror or exc}"

    # -- the GUI thread ------------------------------------------------------------------------------
    @QtCore.Slot(str)
    def _show(self, text: str) -> None:
        self.count += 1
        self.last_report = text
        where = f"logged to {self.path}" if not self.log_error else f"not logged ({self.log_error})"
        line = f"An internal error occurred ({text.splitlines()[0].split(' — ')[-1]}); {where}. The session goes on."
        win = _main_window()
        if win is not None:
            win.statusBar().showMessage(line, 15000)
        if os.environ.get("VITVIZ_NO_DIALOGS"):
            return
        if self.dialog is None:
            self.dialog = _ReportDialog(win)
        self.dialog.add(text, where)
        self.dialog.show()
        self.dialog.raise_()


class _ReportDialog(QtWidgets.QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("vitviz: internal error")
        self.setModal(False)
        self.resize(720, 460)
        self.intro = QtWidgets.QLabel()
        self.intro.setWordWrap(True)
        self.intro.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text = QtWidgets.QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        buttons = QtWidgets.QDialogButtonBox()
        copy = buttons.addButton("Copy report", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QtWidgets.QApplication.clipboard().setText(self.text.toPlainText()))
        buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close).clicked.connect(self.close)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.intro)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)
        self.reports = 0

    def add(self, text: str, where: str) -> None:
        self.reports += 1
        n = f"{self.reports} errors" if self.reports > 1 else "An error"
        self.intro.setText(f"{n} reached the top of vitviz; the session goes on, but what was being done may "
                           f"not have finished. The report is {where}. Please include it in a bug report.")
        if self.reports > 1:
            self.text.appendPlainText("\n" + "-" * 72 + "\n")
        self.text.appendPlainText(text)


def _main_window():
    app = QtWidgets.QApplication.instance()
    if app is None:
        return None
    active = app.activeWindow()
    if isinstance(active, QtWidgets.QMainWindow):
        return active
    wins = [w for w in app.topLevelWidgets() if isinstance(w, QtWidgets.QMainWindow) and w.isVisible()]
    return wins[-1] if wins else None


def install(app: QtWidgets.QApplication, path: str | None = None) -> CrashReporter:
    """Route uncaught exceptions of the GUI (sys.excepthook) and threads (threading.excepthook) here."""
    reporter = CrashReporter(app, path)
    sys.excepthook = reporter.excepthook
    threading.excepthook = reporter.threading_hook
    app._vitviz_crash_reporter = reporter  # kept alive with the application
    return reporter


# -- the settings file -------------------------------------------------------------------------------
def _geometry(value) -> None:
    if value is not None and not isinstance(value, (QtCore.QByteArray, bytes)):
        raise TypeError("not bytes")


# Values the window converts at start-up; a value that does not convert makes the file corrupt.
_CONVERTED = {"display/opacity": int, "window/geometry": _geometry}


def settings_problem(settings: QtCore.QSettings) -> str | None:
    """Why the settings file cannot be trusted, or None. Qt's INI reader accepts almost anything
    (random bytes become a key), so an INI file is checked line by line too; on every platform the
    values the window converts at start-up must convert."""
    if settings.status() != QtCore.QSettings.Status.NoError:
        return f"Qt could not read it ({settings.status().name})"
    path = settings.fileName()
    if path.endswith((".conf", ".ini")):  # not macOS plists or the Windows registry
        why = _ini_problem(path)
        if why:
            return why
    for key, convert in _CONVERTED.items():
        value = settings.value(key)
        try:
            convert(value) if value is not None else None
        except (TypeError, ValueError):
            return f"the value of {key} ({str(value)[:20]!r}) is not valid"
    return None


def _ini_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if b"\x00" in data:
        return "it holds binary data"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 text (byte {exc.start})"
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not (s[0] in ";#" or (s[0] == "[" and s.endswith("]")) or ("=" in s and s[0] != "=")):
            return f"line {n} is neither a [section] nor key=value"
    return None


def open_settings(organization: str = "vitviz", application: str = "vitviz") -> tuple[QtCore.QSettings, str | None]:
    """The user's settings, or defaults when the file is corrupt: the file is kept beside as
    <name>.corrupt (for a bug report) and a one-line notice says so. Returns (settings, notice)."""
    settings = QtCore.QSettings(organization, application)
    why = settings_problem(settings)
    if why is None:
        return settings, None
    path = settings.fileName()
    del settings  # not written back over the renamed file
    kept = path + ".corrupt"
    try:
        os.replace(path, kept)
    except OSError:
        kept = ""
    settings = QtCore.QSettings(organization, application)
    settings.clear()
    return settings, (f"The settings file was damaged ({why}); starting with defaults"
                      + (f" (the old file is kept as {kept})." if kept else "."))
