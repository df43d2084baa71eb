"""Inference off the GUI thread. Every request carries an id; results of superseded requests are
dropped, so a fast user never sees a stale map."""
from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass

from PySide6 import QtCore


@dataclass(frozen=True)
class AnalysisRequest:
    id: int
    image: object  # PIL.Image, already loaded and validated in the GUI thread
    image_name: str
    model: str
    weights: str
    device: str


@dataclass(frozen=True, eq=False)
class ExplainRequest:
    """A gradient method's map (a forward and a backward pass) for an analysis already on screen."""
    id: int
    analysis: object
    method: str
    kwargs: tuple  # (name, value) pairs: context and parameters, as analysis.explain takes them
    key: object = None  # the caller's own key, handed back with the result


class _Worker(QtCore.QObject):
    """Lives in the worker thread. Imports torch there, on first use, so the window is up first."""

    progress = QtCore.Signal(int, str)
    finished = QtCore.Signal(int, object)
    failed = QtCore.Signal(int, str)
    explained = QtCore.Signal(int, object, object)
    explainFailed = QtCore.Signal(int, object, str)

    def __init__(self, latest: "callable", latest_explain: "callable" = None):
        super().__init__()
        self._latest = latest
        self._latest_explain = latest_explain or latest

    @QtCore.Slot(object)
    def explain(self, req: ExplainRequest) -> None:
        """Same rules as process(): a request superseded while queued is skipped."""
        if req.id != self._latest_explain():
            return
        try:
            values = req.analysis.explain(req.method, **dict(req.kwargs))
            self.explained.emit(req.id, req, values)
        except Exception as exc:  # bad target, no classifier head, ...: the panel says why
            msg = str(exc) or type(exc).__name__
            self.explainFailed.emit(req.id, req, msg if isinstance(exc, (ValueError, IndexError)) else
                                    f"{type(exc).__name__}: {msg}\n\n{traceback.format_exc(limit=3)}")

    @QtCore.Slot()
    def release_memory(self) -> None:
        """After a result replaced the one on screen: what the old one held goes back to the OS."""
        from ..core.memory_release import release_free_memory

        release_free_memory()

    @QtCore.Slot(object)
    def process(self, req: AnalysisRequest) -> None:
        if req.id != self._latest():
            return  # superseded while queued: skip the work entirely
        try:
            from ..core.api import analyze, get_model
            from ..core.memory_estimate import check_model

            self.progress.emit(req.id, f"Loading {req.model}…")
            check_model(req.model, req.image.size, req.device)  # refuses what would not fit in memory
            loaded = get_model(req.model, req.weights, req.device)
            if req.id != self._latest():
                return
            self.progress.emit(req.id, f"Running {req.model} on {req.image_name}…")
            result = analyze(req.image, model=loaded)
            self.finished.emit(req.id, result)
            if hasattr(result, "rollout_engine"):  # every rollout setting a lookup from here on
                result.rollout_engine().prepare_in_background()
        except Exception as exc:  # shown to the user; the app keeps what it had
            msg = str(exc) or type(exc).__name__
            self.failed.emit(req.id, msg if "Error" in type(exc).__name__ and str(exc) else
                             f"{type(exc).__name__}: {msg}\n\n{traceback.format_exc(limit=3)}")


class AnalysisRunner(QtCore.QObject):
    """GUI-thread front of the worker: submit() returns an id; resultReady only for the latest."""

    submitRequest = QtCore.Signal(object)
    resultReady = QtCore.Signal(object)
    errorRaised = QtCore.Signal(str)
    busyChanged = QtCore.Signal(bool, str)
    submitExplain = QtCore.Signal(object)
    releaseMemory = QtCore.Signal()  # queued to the worker: free heap pages back to the OS
    explainReady = QtCore.Signal(object, object)  # ExplainRequest, map: only for the latest request
    explainFailed = QtCore.Signal(object, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest_id = 0
        self._latest_explain = 0  # gradient jobs: their own ids (a new class does not cancel inference)
        self._thread = QtCore.QThread()
        self._thread.setObjectName("vitviz-inference")
        self._worker = _Worker(self.latest_id, self.latest_explain_id)
        self._worker.moveToThread(self._thread)
        self.submitRequest.connect(self._worker.process)
        self.submitExplain.connect(self._worker.explain)
        self.releaseMemory.connect(self._worker.release_memory)
        self._worker.explained.connect(self._on_explained)
        self._worker.explainFailed.connect(self._on_explain_failed)
        # Connected to slots of this GUI-thread object: queued, so they run in the GUI thread.
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.finished.connect(self._worker.deleteLater)
        self._thread.start()

    def latest_id(self) -> int:
        with self._lock:
            return self._latest_id

    def latest_explain_id(self) -> int:
        with self._lock:
            return self._latest_explain

    def submit_explain(self, analysis, method: str, kwargs: dict, key=None) -> int:
        """analysis.explain(method, **kwargs) in the worker thread; explainReady(request, map) for the
        latest such request only (an earlier one still queued is skipped, one arriving late dropped)."""
        with self._lock:
            self._latest_explain += 1
            rid = self._latest_explain
        self.submitExplain.emit(ExplainRequest(rid, analysis, method, tuple(sorted(kwargs.items())), key))
        return rid

    def submit(self, image, image_name: str, model: str, weights: str, device: str = "cpu") -> int:
        with self._lock:
            self._latest_id += 1
            rid = self._latest_id
            self._latest_explain += 1  # maps of the analysis being replaced are stale
        self.busyChanged.emit(True, f"Queued {model}…")
        self.submitRequest.emit(AnalysisRequest(rid, image, image_name, model, weights, device))
        return rid

    @QtCore.Slot(int, str)
    def _on_progress(self, rid: int, text: str) -> None:
        if rid == self.latest_id():
            self.busyChanged.emit(True, text)

    @QtCore.Slot(int, object)
    def _on_finished(self, rid: int, result) -> None:
        if rid != self.latest_id():
            return  # stale
        self.busyChanged.emit(False, "")
        self.resultReady.emit(result)  # the window now shows it and has let go of the previous one
        self.releaseMemory.emit()

    @QtCore.Slot(int, str)
    def _on_failed(self, rid: int, message: str) -> None:
        if rid != self.latest_id():
            return
        self.busyChanged.emit(False, "")
        self.errorRaised.emit(message)

    @QtCore.Slot(int, object, object)
    def _on_explained(self, rid: int, req, values) -> None:
        if rid == self.latest_explain_id():
            self.explainReady.emit(req, values)

    @QtCore.Slot(int, object, str)
    def _on_explain_failed(self, rid: int, req, message: str) -> None:
        if rid == self.latest_explain_id():
            self.explainFailed.emit(req, message)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop the thread (after any forward in progress finishes)."""
        with self._lock:
            self._latest_id += 1  # anything still queued is now stale and skipped
            self._latest_explain += 1
        self._thread.quit()
        self._thread.wait(timeout_ms)
