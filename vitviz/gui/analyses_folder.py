""""Analyse folder..." for the analyses window: the analyses of the model on screen over every image
of a folder, in a worker thread, with progress, ETA and cancel; the result is their mean over the
images (vitviz.core.analysis.over_images.measure_many), shown in the window's own plots.

The run uses a private copy of the model's modules (the same weight tensors, its own hooks: see
over_images.private_model), so the main window can keep analysing images while it runs. Files that
cannot be read are listed when it ends; they do not stop it.
"""
from __future__ import annotations

import threading
import time

from PySide6 import QtCore, QtWidgets

BATCH = 4  # images per forward: progress moves every few images, memory stays small


class _Signals(QtCore.QObject):
    """Made in the GUI thread, emitted from the run's thread (slots of GUI-thread objects run there)."""

    progress = QtCore.Signal(int, int, int)  # run id, images done, total
    done = QtCore.Signal(int, object)  # run id, FolderMeasures or an error text


_RUNNING: set = set()  # runs in flight keep their Python objects (and their signals) alive


class _Run(QtCore.QRunnable):
    def __init__(self, rid: int, analysis, images: list[str], names, signals: _Signals):
        super().__init__()
        self.rid, self.analysis, self.images, self.names, self.signals = rid, analysis, images, names, signals
        self.cancel = threading.Event()

    def run(self) -> None:
        try:
            from ..core.analysis.over_images import measure_many, private_model
            from ..core.gradients import model_of

            loaded = private_model(model_of(self.analysis))
            res = measure_many(self.images, list(self.names), loaded, batch_size=BATCH, workers=0,
                               device=loaded.device, on_error="yield", cancel=self.cancel,
                               progress=lambda done, total: self.signals.progress.emit(self.rid, done, total or 0))
            self.signals.done.emit(self.rid, res)
        except Exception as exc:  # shown in the window; the window stays usable
            self.signals.done.emit(self.rid, f"{type(exc).__name__}: {exc}")
        finally:
            _RUNNING.discard(self)


def eta_text(done: int, total: int, elapsed: float) -> str:
    """'12/40 images, 3.1 img/s, about 9 s left' (no rate before the first batch)."""
    if done <= 0 or elapsed <= 0:
        return f"0/{total} images…"
    rate = done / elapsed
    left = (total - done) / rate
    return f"{done}/{total} images, {rate:.1f} img/s, about {left:.0f} s left"


class FolderBar(QtWidgets.QWidget):
    """[Analyse folder…] [progress] [Cancel] and what the last run gave. Emits finished(result)
    with a FolderMeasures (also when cancelled: the means of the images done)."""

    finished = QtCore.Signal(object)
    started = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.button = QtWidgets.QPushButton("Analyse folder…")
        self.button.setToolTip("Run these analyses over every image in a folder (and its sub-folders) and "
                               "show their mean over the images")
        self.button.clicked.connect(self.choose_folder)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.label = QtWidgets.QLabel("")
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.button, self.bar, self.cancel_button):
            lay.addWidget(w)
        lay.addWidget(self.label, 1)
        self.bar.hide()
        self.cancel_button.hide()
        self.analysis = None
        self.names: tuple = ()
        self._rid = 0
        self._run: _Run | None = None
        self._t0 = 0.0
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _Signals()  # no parent: a run still going after the window is gone emits into nothing
        self._signals.progress.connect(self._on_progress)
        self._signals.done.connect(self._on_done)
        self.set_analysis(None, ())

    @property
    def running(self) -> bool:
        return self._run is not None

    def set_analysis(self, analysis, names) -> None:
        """The analysis whose model a run uses and the analyses it computes (none: the button is off)."""
        from ..core.gradients import has_model

        self.analysis, self.names = analysis, tuple(names)
        ok = bool(self.names) and analysis is not None and has_model(analysis)
        self.button.setEnabled(ok and not self.running)

    def choose_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Analyse the images of a folder")
        if folder:
            self.start(folder)

    def start(self, folder) -> bool:
        """Run the analyses over the images of `folder` (False, with the reason shown, if none)."""
        from ..core.batch.folder import list_images

        if self.running or not self.button.isEnabled():
            return False
        images = list_images([folder])
        if not images:
            self.label.setText(f"No image files in {folder}.")
            return False
        self._rid += 1
        self._run = _Run(self._rid, self.analysis, images, self.names, self._signals)
        _RUNNING.add(self._run)
        self._t0 = time.perf_counter()
        self.folder, self.total = str(folder), len(images)
        self.bar.setRange(0, len(images))
        self.bar.setValue(0)
        self.bar.setFormat("%v / %m")
        self.bar.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.button.setEnabled(False)
        self.label.setText(f"Loading {self.analysis.model_name} for {len(images)} image(s)…")
        self.started.emit()
        self._pool.start(self._run)
        return True

    def cancel(self) -> None:
        if self._run is not None:
            self._run.cancel.set()
            self.cancel_button.setEnabled(False)
            self.label.setText("Cancelling after this batch…")

    def shutdown(self) -> None:
        """Cancel a run and wait for its thread (closing the window does it)."""
        if self._run is not None:
            self._run.cancel.set()
        self._pool.waitForDone()

    @QtCore.Slot(int, int, int)
    def _on_progress(self, rid: int, done: int, total: int) -> None:
        if rid != self._rid or self._run is None:
            return
        self.bar.setValue(done)
        if not self._run.cancel.is_set():
            self.label.setText(eta_text(done, total or self.total, time.perf_counter() - self._t0))

    @QtCore.Slot(int, object)
    def _on_done(self, rid: int, result) -> None:
        if rid != self._rid:
            return
        self._run = None
        self.bar.hide()
        self.cancel_button.hide()
        self.set_analysis(self.analysis, self.names)
        if isinstance(result, str):
            self.label.setText(f"The folder run failed: {result}")
            self.label.setToolTip("")
            return
        self.result = result
        self.label.setText(run_text(result, self.folder, time.perf_counter() - self._t0))
        self.label.setToolTip("\n".join(f"{s}: {e}" for s, e in result.failures))
        self.finished.emit(result)


def run_text(res, folder: str, seconds: float) -> str:
    """What a finished run gave, in one line (the failures' reasons are in the tooltip)."""
    n = len(res.sources)
    head = (f"Cancelled: shown over the {n} image(s) done" if res.cancelled
            else f"{n} image(s) of {folder} analysed")
    text = f"{head} ({seconds:.1f} s)"
    if res.failures:
        names = ", ".join(s.rsplit("/", 1)[-1] for s, _ in res.failures[:3])
        more = f" and {len(res.failures) - 3} more" if len(res.failures) > 3 else ""
        text += f"; {len(res.failures)} file(s) could not be read ({names}{more}: hover for why)"
    return text
