"""Pretrained weights from the GUI: ask before downloading, fetch in a worker thread with a progress
bar and a Cancel button in the status bar, then run the model with them.

The file goes into torch hub's cache through core.models.download (temporary file, hash check,
rename), so a cancelled or failed download leaves nothing behind; the window keeps what it showed.
Under VITVIZ_NO_DIALOGS (tests, automation) nothing is asked: the answer is `auto_answer`, by
default "random" (the model runs untrained and the banner says how to get the weights);
VITVIZ_DOWNLOAD=1 (`vitviz --download`) answers "download".
"""
from __future__ import annotations

import html
import os
import threading
import time

from PySide6 import QtCore, QtWidgets

ANSWERS = ("download", "random", "cancel")


class _FetchWorker(QtCore.QObject):
    """Lives in the download thread."""

    progress = QtCore.Signal(object, object)  # (done bytes, total bytes or None): objects, files pass 2 GB
    done = QtCore.Signal(str)  # the file's path
    failed = QtCore.Signal(str, bool)  # (message, cancelled)

    def __init__(self, model: str, cancel: threading.Event):
        super().__init__()
        self._model, self._cancel = model, cancel

    @QtCore.Slot()
    def run(self) -> None:
        from ..core.models.download import DownloadCancelled, DownloadError, download_weights

        last = [0.0, -1]

        def progress(done: int, total: int | None) -> None:
            # every 0.1% (at most 1000 signals, and the last chunk before a stall is shown), or
            # every 0.1 s when the size is not known
            now = time.monotonic()
            permille = int(1000 * done / total) if total else -1
            if done in (0, total) or (permille != last[1] if total else now - last[0] >= 0.1):
                last[:] = [now, permille]
                self.progress.emit(done, total)

        try:
            path = download_weights(self._model, progress=progress, cancel=self._cancel)
        except DownloadCancelled as exc:
            self.failed.emit(str(exc), True)
        except DownloadError as exc:
            self.failed.emit(str(exc), False)
        except Exception as exc:  # anything else: still a message, never a dead thread
            self.failed.emit(f"{type(exc).__name__}: {exc}", False)
        else:
            self.done.emit(str(path))


class DownloadJob(QtCore.QObject):
    """One model's weights, fetched in its own thread. GUI-thread object: connect freely."""

    progressed = QtCore.Signal(object, object)  # (done, total or None)
    finished = QtCore.Signal(str, str, str)  # (model, outcome "downloaded"|"cancelled"|"failed", path or message)

    def __init__(self, model: str, parent=None):
        super().__init__(parent)
        self.model = model
        self.done_bytes, self.total_bytes = 0, None
        self._cancel = threading.Event()
        self._thread = QtCore.QThread()
        self._thread.setObjectName("vitviz-download")
        self._worker = _FetchWorker(model, self._cancel)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        # slots of this GUI-thread object: queued, they run in the GUI thread
        self._worker.progress.connect(self._on_progress)
        self._worker.done.connect(self._on_done)
        self._worker.failed.connect(self._on_failed)
        self._thread.finished.connect(self._worker.deleteLater)
        self.running = False

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()  # checked between chunks; the partial file is deleted

    def wait(self, timeout_ms: int = 10000) -> bool:
        self._thread.quit()
        return self._thread.wait(timeout_ms)

    @QtCore.Slot(object, object)
    def _on_progress(self, done, total) -> None:
        self.done_bytes, self.total_bytes = done, total
        self.progressed.emit(done, total)

    @QtCore.Slot(str)
    def _on_done(self, path: str) -> None:
        self._end("downloaded", path)

    @QtCore.Slot(str, bool)
    def _on_failed(self, message: str, cancelled: bool) -> None:
        self._end("cancelled" if cancelled else "failed", message)

    def _end(self, outcome: str, detail: str) -> None:
        self.running = False
        self.wait()
        self.finished.emit(self.model, outcome, detail)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}"


class DownloadStatus(QtWidgets.QWidget):
    """Status-bar strip: what is downloading, a real progress bar, Cancel."""

    cancelClicked = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QtWidgets.QLabel()
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFixedWidth(180)
        self.bar.setFormat("%p%")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download (nothing is kept)")
        self.cancel_button.clicked.connect(self.cancelClicked)
        line = QtWidgets.QFrame()
        line.setFrameShape(QtWidgets.QFrame.Shape.VLine)
        line.setFrameShadow(QtWidgets.QFrame.Shadow.Sunken)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(8, 0, 0, 0)
        lay.addWidget(line)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self.setVisible(False)

    def show_progress(self, file_name: str, done: int, total: int | None) -> None:
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(min(1000, int(1000 * done / total)))
            self.label.setText(f"Downloading {file_name}: {_mb(done)} of {_mb(total)} MB")
        else:  # size unknown: a busy bar and the bytes so far
            self.bar.setRange(0, 0)
            self.label.setText(f"Downloading {file_name}: {_mb(done)} MB")
        self.setVisible(True)

    @property
    def percent(self) -> float:
        return 100.0 * self.bar.value() / 1000 if self.bar.maximum() else 0.0


def download_info(spec, size_mb: float | None = None) -> dict:
    """What the question shows: file name, size (MB or None), the URL fetched, the cache folder."""
    from ..core.models.download import effective_url, file_name_of
    from ..core.models.weights import hub_checkpoint_dir, weights_url

    url = weights_url(spec)
    return {"label": spec.label, "file": file_name_of(url), "size_mb": size_mb, "url": effective_url(url),
            "folder": str(hub_checkpoint_dir())}


def question_box(parent, info: dict) -> QtWidgets.QMessageBox:
    """The download question (built apart from exec() so screenshots and tests can look at it)."""
    from .model_picker import format_mb

    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Question)
    box.setWindowTitle("Download pretrained weights?")
    box.setTextFormat(QtCore.Qt.TextFormat.RichText)
    box.setText(f"<b>{html.escape(info['label'])}</b>: its pretrained weights are not on this computer yet.<br>"
                "Download them now? Without them the model runs with random (untrained) weights.")
    size = format_mb(info["size_mb"]) or "not known in advance"
    rows = [("File", info["file"]), ("Size", size), ("From", info["url"]), ("Into", info["folder"])]
    box.setInformativeText(
        "<table cellspacing=4>" + "".join(
            f"<tr><td><b>{k}</b></td><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")
    box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setStyleSheet("QLabel#qt_msgbox_informativelabel, QLabel#qt_msgbox_label { min-width: 34em; }")
    box.download_button = box.addButton("Download", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    box.random_button = box.addButton("Use random weights", QtWidgets.QMessageBox.ButtonRole.ActionRole)
    box.cancel_button = box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(box.download_button)
    box.setEscapeButton(box.cancel_button)
    return box


class DownloadController(QtCore.QObject):
    """The window's downloads: when to ask, the one running job, what happens after it.

    Uses from the window: picker (state_of, size_of, set_transient, refresh_states), model,
    weights, run(), restore_shown_setup(), _error_dialog(), statusBar()."""

    finished = QtCore.Signal(str, str)  # (model, "downloaded" | "cancelled" | "failed"), after the window reacted

    def __init__(self, window):
        super().__init__(window)  # the window is reached as parent(): no reference cycle keeping it alive
        self.asked: set[str] = set()  # models whose question was answered this session
        self.auto_answer: str | None = "download" if os.environ.get("VITVIZ_DOWNLOAD") else None
        self.job: DownloadJob | None = None
        self.last_info: dict | None = None
        self.status = DownloadStatus()
        self.status.cancelClicked.connect(self.cancel)
        window.statusBar().addPermanentWidget(self.status)

    @property
    def win(self):
        return self.parent()

    def busy_with(self, model: str) -> bool:
        return self.job is not None and self.job.running and self.job.model == model

    def forget(self, model: str) -> None:
        """An explicit choice of the model: ask again if its weights are still missing."""
        self.asked.discard(model)

    def intercept(self, model: str, weights: str) -> bool:
        """Before running (model, weights): True when the run must not go ahead now (a download
        started or is under way, and runs it when done; or the user cancelled the choice)."""
        if weights != "pretrained":
            return False
        if self.busy_with(model):
            self.win.statusBar().showMessage(f"Waiting for the download of {model}'s weights…", 5000)
            return True
        if model in self.asked or self.win.picker.state_of(model) != "downloadable":
            return False
        if self.job is not None and self.job.running:  # one download at a time
            self.win.statusBar().showMessage(
                f"Downloading {self.job.model}'s weights; {model} runs with random weights meanwhile.", 8000)
            return False
        answer = self.ask(model)
        self.asked.add(model)
        if answer == "download":
            self.start(model)
            return True
        if answer == "cancel":
            self.win.restore_shown_setup()
            return True
        return False  # random: loading notes that the weights are missing; the banner shows it

    def ask(self, model: str) -> str:
        from ..core.models.registry import get_spec

        info = download_info(get_spec(model), self.win.picker.size_of(model))
        self.last_info = info
        if self.auto_answer in ANSWERS:
            return self.auto_answer
        if os.environ.get("VITVIZ_NO_DIALOGS"):
            return "random"
        box = question_box(self.win, info)
        box.exec()
        clicked = box.clickedButton()
        return ("download" if clicked is box.download_button else
                "random" if clicked is box.random_button else "cancel")

    def start(self, model: str) -> DownloadJob:
        from ..core.models.registry import get_spec

        info = self.last_info if self.last_info and self.last_info["label"] == get_spec(model).label \
            else download_info(get_spec(model), self.win.picker.size_of(model))
        self.asked.add(model)
        job = self.job = DownloadJob(model, self)
        job.progressed.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        self._file = info["file"]
        self.status.show_progress(self._file, 0, None)
        self.win.picker.set_transient(model, "downloading…")
        job.start()
        return job

    @QtCore.Slot()
    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.label.setText(f"Cancelling the download of {self._file}…")
            self.status.cancel_button.setEnabled(False)

    def shutdown(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(10000)

    @QtCore.Slot(object, object)
    def _on_progress(self, done, total) -> None:
        before = int(self.status.percent)
        self.status.show_progress(self._file, done, total)
        if total and int(self.status.percent) != before:
            self.win.picker.set_transient(self.job.model, f"downloading {int(self.status.percent)}%")

    @QtCore.Slot(str, str, str)
    def _on_finished(self, model: str, outcome: str, detail: str) -> None:
        self.status.setVisible(False)
        self.status.cancel_button.setEnabled(True)
        picker = self.win.picker
        picker.set_transient(model, None)
        waiting = (self.win.model, self.win.weights) == (model, "pretrained")
        if outcome == "downloaded":
            picker.refresh_states(background=False)
            self.win.statusBar().showMessage(f"Downloaded {os.path.basename(detail)} to {os.path.dirname(detail)}",
                                             10000)
            if waiting:
                self.win.run()
        else:
            if outcome == "cancelled":
                self.win.statusBar().showMessage(detail, 10000)
            else:
                self.win._error_dialog("Download failed", detail + "\n\nvitviz goes on with what it had.")
            if waiting and not self.win.restore_shown_setup():
                self.win.run()  # nothing was shown yet: run untrained, the banner says so
        self.finished.emit(model, outcome)
