"""The start-up probe `vitviz bench` runs the app with (VITVIZ_BENCH_STARTUP set): timestamps of the
first window paint and the first attention map painted, printed for vitviz/bench/startup.py to read."""
from __future__ import annotations

import json
import os
import sys
import time

ENV = "VITVIZ_BENCH_STARTUP"
PREFIX = "VITVIZ_BENCH"


def _say(event: str, **fields) -> None:
    extra = "".join(f" {k}={v}" for k, v in fields.items())
    sys.stdout.write(f"{PREFIX} {event} {time.time():.6f}{extra}\n")
    sys.stdout.flush()


def install_probe(app, win, mode: str) -> None:
    """Print `VITVIZ_BENCH first_paint <unix time> torch=0|1` once the window's first paint is done;
    with mode "map" also `first_map <time>` once the first analysis' main view has painted. The
    process then exits at once (os._exit: the measurement is over, the worker may be mid-import)."""
    from PySide6 import QtCore

    class Probe(QtCore.QObject):
        def __init__(self) -> None:
            super().__init__(app)
            self.painted = False
            self.torch_at_paint = 0
            self.map_view = None

        def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
            if event.type() == QtCore.QEvent.Type.Paint and obj.isWidgetType():
                if not self.painted and obj.window() is win:
                    # torch's state as the paint starts: the app's own first-paint hook may start
                    # the worker (and its torch import) before the deferred report below runs
                    self.painted = True
                    self.torch_at_paint = int("torch" in sys.modules)  # report when this pass is over
                    QtCore.QTimer.singleShot(0, self.first_paint)
                elif self.map_view is not None and obj is self.map_view:
                    self.map_view = None
                    QtCore.QTimer.singleShot(0, self.first_map)
            return False

        def first_paint(self) -> None:
            _say("first_paint", torch=self.torch_at_paint)
            if mode != "map":
                os._exit(0)

        def first_map(self) -> None:
            _say("first_map")
            os._exit(0)

        @QtCore.Slot(object)
        def on_result(self, analysis) -> None:
            self.map_view = win.panels[analysis.family].main_view.viewport()

        @QtCore.Slot(str)
        def on_error(self, message: str) -> None:
            _say("error", message=json.dumps(message.splitlines()[0] if message else "?"))
            os._exit(1)

    _say("window_built")  # imports done, MainWindow constructed, not yet shown
    probe = Probe()
    app.installEventFilter(probe)
    win.analysisShown.connect(probe.on_result)
    win.runner.errorRaised.connect(probe.on_error)
    win._bench_probe = probe  # keep it alive
