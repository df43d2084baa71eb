"""Maps of gradient methods for a panel: computed in the window's worker thread (a forward and a
backward pass), kept per (method, context, parameters) for the analysis on screen.

A panel asks `get(method, kwargs)`: a plain method is computed on the spot; a gradient method's map
is returned when it is known, else None while the worker computes it (the panel keeps showing the
previous map with a busy note) and the panel's on_method_map_ready() runs when it arrives. Without a
runner (a panel outside the main window, as in some tests) it is computed on the spot too.
"""
from __future__ import annotations

from collections import OrderedDict

from PySide6 import QtCore

_KEPT = 64  # maps of the current analysis (a few ms each to recompute from a cached backward)


class MethodMapError(ValueError):
    """The worker could not compute the map (bad target, no classifier head...)."""


class GradientMaps(QtCore.QObject):
    def __init__(self, panel):
        super().__init__(panel)
        self.panel = panel
        self._analysis = None
        self._maps: OrderedDict = OrderedDict()  # key -> map, or MethodMapError
        self._pending = None  # key of the request in flight
        self._pending_id = 0  # its id (the runner drops it when a new image supersedes it)
        self._runner = None
        self.requests = 0  # submitted to the worker (tests read it)

    @staticmethod
    def key(method, kwargs: dict) -> tuple:
        return (method.name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items())))

    def runner(self):
        runner = getattr(self.panel, "grad_runner", None) or getattr(self.panel.window(), "runner", None)
        if runner is not None and runner is not self._runner:
            runner.explainReady.connect(self._on_ready)
            runner.explainFailed.connect(self._on_failed)
            self._runner = runner
        return runner

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def _reset_for(self, analysis) -> None:
        if analysis is not self._analysis:
            self._analysis, self._maps, self._pending = analysis, OrderedDict(), None

    def get(self, method, kwargs: dict):
        """The map now, or None while the worker computes it. Raises MethodMapError (or the method's
        ValueError) when it cannot be computed."""
        analysis = self.panel.analysis
        self._reset_for(analysis)
        if not method.needs_grad:
            return method(analysis, **kwargs)
        key = self.key(method, kwargs)
        if key in self._maps:
            self._maps.move_to_end(key)
            found = self._maps[key]
            if isinstance(found, Exception):
                raise found
            return found
        runner = self.runner()
        if runner is None:
            return self._store(key, method(analysis, **kwargs))
        if self._pending != key or self._pending_id != runner.latest_explain_id():
            self._pending = key
            self.requests += 1
            self._pending_id = runner.submit_explain(analysis, method.name, kwargs, key=(analysis, key))
        return None

    def _store(self, key, value):
        self._maps[key] = value
        while len(self._maps) > _KEPT:
            self._maps.popitem(last=False)
        return value

    @QtCore.Slot(object, object)
    def _on_ready(self, req, values) -> None:
        analysis, key = req.key if isinstance(req.key, tuple) and len(req.key) == 2 else (None, None)
        if analysis is not self.panel.analysis or analysis is not self._analysis:
            return  # another panel's request, or an analysis no longer shown
        self._store(key, values)
        if key == self._pending:
            self._pending = None
            self.panel.on_method_map_ready()

    @QtCore.Slot(object, str)
    def _on_failed(self, req, message: str) -> None:
        analysis, key = req.key if isinstance(req.key, tuple) and len(req.key) == 2 else (None, None)
        if analysis is not self.panel.analysis or analysis is not self._analysis:
            return
        self._store(key, MethodMapError(message))
        if key == self._pending:
            self._pending = None
            self.panel.on_method_map_ready()
