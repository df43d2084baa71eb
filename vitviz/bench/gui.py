"""Row groups 2 and 3: GUI latency, from a synthetic input event to the affected views PAINTED.

The real MainWindow runs the real pipeline (image opened, analysed by the worker thread through
analyze()). Each measurement: events are drained, the input is sent (QTest mouse click on the
view's viewport, or the QAction a shortcut triggers, or the control's setter), then the event loop
runs until every target viewport has received its Paint event and processEvents has returned, i.e.
the repaint Qt scheduled has been rasterised into the window's backing store. Nothing is forced
(no grab(), no repaint()): it is the paint a user would get. With QT_QPA_PLATFORM=offscreen the
backing store is an in-memory raster image, so the final flush to a screen is not included.
"""
from __future__ import annotations

import time
import traceback

import numpy as np

from .context import BenchContext, qt_platform
from .metrics import Row, median, missing, p95

GOAL_MEDIAN = "<= 10"
GOAL_P95 = "<= 16"
GOAL_SWITCH = "<= 16"
MODELS = (("ViT-B/16", "vit_b_16"), ("ViT-L/16", "vit_l_16"))


def metric_names(label: str) -> dict[str, tuple[str, str]]:
    """key -> (metric, goal)."""
    return {
        "click_median": (f"Click to paint, {label}: median", GOAL_MEDIAN),
        "click_p95": (f"Click to paint, {label}: p95", GOAL_P95),
        "switch": (f"Layer/head switch to paint, {label}: median", GOAL_SWITCH),
        "rollout_query": (f"Rollout for a new query to paint, {label}: median", GOAL_SWITCH),
        "rollout_recompute": (f"Rollout for a new discard ratio to paint, {label}: median", GOAL_SWITCH),
        "rollout_fusion": (f"Rollout for a new head fusion to paint, {label}: median", GOAL_SWITCH),
    }


def _show_rollout(panel, query=None, fusion=None, ratio=None) -> None:
    """What the panel does when only the rollout's query / fusion / ratio changes: the rollout view
    redrawn. Works with the state-based panel (update of ViTState) and the seed's controls."""
    if hasattr(panel, "update_state"):
        s = panel.state
        changes = {} if query is None else {"query": query}
        if fusion is not None or ratio is not None:
            p = dict(s.method_params) or {"head_fusion": "mean", "discard_ratio": 0.0}
            p.update({k: v for k, v in (("head_fusion", fusion), ("discard_ratio", ratio)) if v is not None})
            changes.update(method="rollout", method_params=p)
        panel.state = s.replace(**changes)
        panel.refresh_method()
    else:
        if query is not None:
            panel.query = query
        if fusion is not None:
            panel.rollout_fusion.setCurrentText(fusion)
        if ratio is not None:
            panel.discard_spin.setValue(ratio)
        panel.refresh_rollout()


def _wait_rollout_prepared(analysis, timeout: float = 600.0) -> float:
    """Seconds until the background rollout preparation the worker started has finished."""
    engine = getattr(analysis, "rollout_engine", None)
    if engine is None:
        return 0.0
    t0 = time.perf_counter()
    engine().prepare_in_background().join(timeout)
    return time.perf_counter() - t0


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    return [(m, "ms", g) for label, _ in MODELS for m, g in metric_names(label).values()]


def _app():
    import os

    if qt_platform():
        os.environ.setdefault("QT_QPA_PLATFORM", qt_platform())
    from PySide6 import QtWidgets

    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["vitviz-bench"])


class _PaintWatcher:
    """Which watched widgets received a Paint event since the last reset()."""

    def __init__(self, widgets):
        from PySide6 import QtCore

        watcher = self

        class Filter(QtCore.QObject):
            def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
                if event.type() == QtCore.QEvent.Type.Paint:
                    watcher.painted.add(id(obj))
                    watcher.paints += 1
                    watcher.last_paint = time.perf_counter()
                return False

        self.filter = Filter()
        self.widgets = list(widgets)
        self.painted: set[int] = set()
        self.paints = 0
        self.last_paint = 0.0
        for w in self.widgets:
            w.installEventFilter(self.filter)

    def reset(self) -> None:
        self.painted.clear()

    def done(self, targets) -> bool:
        return all(id(t) in self.painted for t in targets)

    def remove(self) -> None:
        for w in self.widgets:
            w.removeEventFilter(self.filter)


class GuiBench:
    def __init__(self, app, watcher: _PaintWatcher):
        self.app, self.watcher = app, watcher

    def settle(self, quiet: float = 0.05, limit: float = 2.0) -> None:
        """Run the event loop until nothing has painted for `quiet` seconds."""
        t_end = time.perf_counter() + limit
        self.watcher.last_paint = time.perf_counter()
        while time.perf_counter() < t_end:
            self.app.processEvents()
            if time.perf_counter() - self.watcher.last_paint > quiet:
                return
            time.sleep(0.002)

    def measure(self, action, targets, timeout: float = 5.0, idle: float = 0.03) -> tuple[float, float]:
        """(seconds from the input until the last repaint it caused had finished, seconds spent in
        the input's handlers). Every widget in `targets` must repaint; any other watched widget
        that repaints (e.g. the grid, when its content changed) is waited for too: the clock stops
        after the last processEvents() that delivered a Paint, once `idle` s pass without one."""
        from PySide6 import QtCore

        self.settle()
        self.watcher.reset()
        t0 = time.perf_counter()
        action()
        t_handled = t_end = time.perf_counter()
        seen = self.watcher.paints
        while True:
            self.app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents)
            now = time.perf_counter()
            if self.watcher.paints != seen:
                seen, t_end = self.watcher.paints, now
            elif self.watcher.done(targets) and now - t_end > idle:
                break
            if now - t0 > timeout:
                raise RuntimeError(f"the views were not repainted within {timeout:.0f} s of the input")
        return t_end - t0, t_handled - t0


def _wait_for(app, signal, start, timeout_s: float):
    """Call start(), run the event loop until `signal` fires; its first argument."""
    from PySide6 import QtCore

    loop = QtCore.QEventLoop()
    got: list = []

    def done(*args):
        got.append(args[0] if args else None)
        loop.quit()

    signal.connect(done)
    QtCore.QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    try:
        start()
        if not got:
            loop.exec()
    finally:
        signal.disconnect(done)
    if not got:
        raise TimeoutError(f"no result within {timeout_s:.0f} s")
    return got[0]


def _click_rows(ctx: BenchContext, bench: GuiBench, win, analysis, label: str) -> list[Row]:
    from PySide6 import QtCore
    from PySide6.QtTest import QTest

    panel = win.panels["vit"]
    names = metric_names(label)
    view, grid_view, roll_view = panel.main_view, panel.grid_view, panel.rollout_view
    L, H = analysis.num_layers, analysis.num_heads
    rows_, cols_ = analysis.grid.shape
    rng = np.random.default_rng(0)
    out: list[Row] = []
    size = f"window {win.width()}x{win.height()}, Qt platform {bench.app.platformName()}"

    # -- click a patch: query -> main overlay + heads x layers grid (+ rollout) painted ---------
    n = ctx.repeats(40, 5)
    clicks, handlers = [], []
    prev = None
    for _ in range(n + 2):  # the first two are warm-up
        while True:
            rc = (int(rng.integers(rows_)), int(rng.integers(cols_)))
            if rc != prev:
                break
        prev = rc
        x0, y0, x1, y1 = analysis.grid.rect(*rc)
        pos = view.view_to_widget((x0 + x1) / 2, (y0 + y1) / 2)
        if not view.viewport().rect().contains(pos):
            raise RuntimeError(f"patch {rc} is not visible in the attention view")
        t, h = bench.measure(lambda: QTest.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                                                      QtCore.Qt.KeyboardModifier.NoModifier, pos),
                             [view.viewport(), grid_view.viewport()])
        if panel.query != rc:
            raise RuntimeError(f"the synthetic click on patch {rc} selected {panel.query}")
        clicks.append(t)
        handlers.append(h)
    clicks, handlers = clicks[2:], handlers[2:]
    how = (f"{n} synthetic clicks (QTest) on random patches of the attention view -> main overlay and "
           f"{L}x{H} = {L * H}-tile grid painted by the event loop (rollout view too); {size}")
    m, g = names["click_median"]
    out.append(Row(m, median(clicks) * 1e3, "ms", g, note=(
        f"{how}; of the median, {median(handlers) * 1e3:.1f} ms in the click's handlers, the rest painting")))
    m, g = names["click_p95"]
    out.append(Row(m, p95(clicks) * 1e3, "ms", g, note=f"same {n} clicks; max {max(clicks) * 1e3:.1f} ms"))

    # -- layer / head switch: what PgDown / PgUp / ] trigger -----------------------------------
    acts = {a.text(): a for a in win.actions()}
    panel.layer_spin.setValue(L // 2)  # away from the ends, where "next layer" would change nothing
    cycle = [acts["Next layer"], acts["Next head"], acts["Previous layer"], acts["Next head"]]
    n = ctx.repeats(40, 5)
    times, handlers = [], []
    for i in range(n + 2):
        before = (panel.layer, panel.head)
        t, h = bench.measure(cycle[i % len(cycle)].trigger, [view.viewport()])  # + the grid if it changed
        if (panel.layer, panel.head) == before:
            raise RuntimeError("a layer/head action changed nothing")
        times.append(t)
        handlers.append(h)
    times, handlers = times[2:], handlers[2:]
    m, g = names["switch"]
    out.append(Row(m, median(times) * 1e3, "ms", g, note=(
        f"{n} triggers of the Next/Previous layer and Next head actions (the PgDown/PgUp/] shortcuts) -> "
        f"main overlay painted, and the grid (its highlight moves); p95 {p95(times) * 1e3:.1f} ms; handlers {median(handlers) * 1e3:.1f} ms")))

    # -- rollout for a new query / discard ratio / head fusion: the rollout view alone ----------
    waited = _wait_rollout_prepared(analysis)
    prep = f"after the background preparation the worker starts (waited {waited:.1f} s for it)"
    n = ctx.repeats(30, 5)
    times = []
    _show_rollout(panel, fusion="mean", ratio=0.9)
    bench.settle()
    for i in range(n + 2):
        rc = (int(rng.integers(rows_)), int(rng.integers(cols_)))
        times.append(bench.measure(lambda rc=rc: _show_rollout(panel, query=rc), [roll_view.viewport()])[0])
    times = times[2:]
    m, g = names["rollout_query"]
    out.append(Row(m, median(times) * 1e3, "ms", g, note=(
        f"{n} new queries at head fusion mean, discard 0.9: the query's rollout row (L vector-matrix "
        f"products) -> rollout view painted, {prep}; p95 {p95(times) * 1e3:.1f} ms")))

    n = ctx.repeats(20, 3)
    times = []
    ratios = iter(np.round(np.arange(0.01, 0.99, 0.01), 2))
    for i in range(n + 1):
        r = float(next(ratios))
        times.append(bench.measure(lambda r=r: _show_rollout(panel, ratio=r), [roll_view.viewport()])[0])
    times = times[1:]
    m, g = names["rollout_recompute"]
    out.append(Row(m, median(times) * 1e3, "ms", g, note=(
        f"{n} discard ratios never used before on this image: every one of the {L} layers thresholded "
        f"({analysis.num_tokens} tokens), the row recomputed, rollout view painted, {prep}; "
        f"p95 {p95(times) * 1e3:.1f} ms")))

    times = []
    engine = analysis.rollout_engine() if hasattr(analysis, "rollout_engine") else None
    for i, f in enumerate(["max", "min", "mean"] * max(1, ctx.repeats(7, 1))):
        if engine is not None:  # the change pays its full price: no discarded layers kept
            engine._stacks.clear()
            engine._rows.clear()
        times.append(bench.measure(lambda f=f: _show_rollout(panel, fusion=f), [roll_view.viewport()])[0])
    m, g = names["rollout_fusion"]
    out.append(Row(m, median(times) * 1e3, "ms", g, note=(
        f"{len(times)} head fusion changes (max / min / mean) at discard {panel_ratio(panel)}, discarded "
        f"layers not cached, rollout view painted, {prep}; p95 {p95(times) * 1e3:.1f} ms")))
    _show_rollout(panel, fusion="mean", ratio=0.0)
    return out


def panel_ratio(panel) -> float:
    if hasattr(panel, "state"):
        return float(dict(panel.state.method_params).get("discard_ratio", 0.0))
    return float(panel.discard_spin.value())


def run(ctx: BenchContext) -> list[Row]:
    from PySide6 import QtCore

    from ..gui.main_window import MainWindow

    import os

    os.environ.setdefault("VITVIZ_NO_DIALOGS", "1")
    app = _app()
    settings = QtCore.QSettings(str(ctx.workdir / "gui-settings.ini"), QtCore.QSettings.Format.IniFormat)
    rows: list[Row] = []
    win = MainWindow(model=MODELS[0][1], weights="random", device=ctx.device, settings=settings)
    win.resize(1400, 860)
    win.show()
    try:
        for i, (label, name) in enumerate(MODELS):
            try:
                start = (lambda: win.open_path(str(ctx.image_path))) if i == 0 else (
                    lambda name=name: win.set_model(name, "random"))
                analysis = _wait_for(app, win.analysisShown, start, timeout_s=900)
                if analysis.model_name != name:
                    raise RuntimeError(f"expected a {name} result, got {analysis.model_name}")
                ctx.analyses[name] = analysis
                panel = win.panels["vit"]
                watcher = _PaintWatcher([panel.main_view.viewport(), panel.grid_view.viewport(),
                                         panel.rollout_view.viewport()])
                try:
                    rows += _click_rows(ctx, GuiBench(app, watcher), win, analysis, label)
                finally:
                    watcher.remove()
            except Exception as exc:
                traceback.print_exc()
                why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
                have = {r.metric for r in rows}
                rows += [missing(m, "ms", g, why) for m, g in metric_names(label).values() if m not in have]
    finally:
        win.close()
        win.deleteLater()
        app.processEvents()
    return rows
