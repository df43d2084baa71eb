"""Row group `soak`: the real MainWindow and worker, offscreen, driven by a seeded random sequence of
image switches, model switches (the demo ViT / Swin / DETR), clicks on the views, shortcut keys
and changes of the panels' own controls (layer, head, method, fusion, discard ratio, threshold,
direction, colormap, opacity, ...), sent without waiting, so they arrive faster than inference
completes. Every few events the soak settles (the worker idle, the result of the latest request on
screen) and checks that each map view on screen paints exactly what the API gives for the same
image, model and view state: vitviz.analyze() + the family's figure builder + overlay_rgba, the
path `vitviz export` takes. Counted: exceptions that reached the event loop, warnings, stale frames
(a view not equal to the API's), threads left after the window closed, RSS growth after warm-up,
and the time from a click to its repaint being processed.

The issue's full counts (500 image switches, 100 model switches among the demo ViT / Swin / DETR
and a random-weights Swin-T, 10,000 clicks, keys and control changes, in a shuffled order) are what
`vitviz bench --only soak` runs; --quick and the default tests run a few hundred events.

    python -m vitviz.bench.soak [--events N | --full] [--seed S] [--diagnose] [--tracemalloc]
        (prints the result as JSON; --diagnose adds object / Qt wrapper / graphics item counts at the
        end of the warm-up and at the end, --tracemalloc the Python allocations that grew in between)
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .metrics import Row, p95

MODELS = ("demo_vit", "demo_swin", "demo_detr")
# the soak: the demo models and a random small torchvision model
FULL_MODELS = (("demo_vit", "pretrained"), ("demo_swin", "pretrained"), ("demo_detr", "pretrained"),
               ("swin_t", "random"))
# kind -> events sent, the counts; "ui" is a click, a key or a control change (MIX's weights)
FULL_COUNTS = {"image": 500, "model": 100, "ui": 10000}
UI_KINDS = ("click", "key", "control")
# kind -> weight in the random sequence
MIX = {"image": 6, "model": 2, "click": 40, "key": 27, "control": 25}
KEYS = ("next_layer", "previous_layer", "next_head", "previous_head", "toggle_cls", "toggle_direction",
        "toggle_grid", "fit_view", "model_view")
RSS_GOAL_MIB = 50
# a panel's map views -> the figure's view they paint (by the state); others are matched by title
VIEW_NAMES = {"main_view": lambda s: "summary" if getattr(s, "summary", False) else "attention",
              "method_view": lambda s: "method", "enc_view": lambda s: "encoder", "det_view": lambda s: "detections"}


def metrics() -> list[tuple[str, str, str | None]]:
    return [("Soak: exceptions reaching the event loop", "count", "<= 0"),
            ("Soak: stale or wrong frames after a settle", "count", "<= 0"),
            ("Soak: threads left after the window closed", "count", "<= 0"),
            ("Soak: Qt objects and top-level widgets left after the window closed", "count", "<= 0"),
            ("Soak: RSS growth after warm-up", "MiB", f"<= {RSS_GOAL_MIB}"),
            ("Soak: click to repaint processed, p95", "ms", None)]


@dataclass
class SoakResult:
    seed: int
    events: int
    counts: dict = field(default_factory=dict)  # kind -> events sent
    settles: int = 0
    views_checked: int = 0
    views_unmatched: int = 0  # map views on screen with no figure view to compare with
    stale: list = field(default_factory=list)  # (event index, view title, why)
    exceptions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    threads_left: list = field(default_factory=list)  # Python threads (not daemons) left running
    qthreads_left: list = field(default_factory=list)  # QThreads the soak saw made, still running
    toplevel_left: list = field(default_factory=list)  # top-level widgets left after the window closed
    qobjects_left: dict = field(default_factory=dict)  # class -> Qt objects made during the soak, still alive
    worker_pending: float | None = None  # seconds a no-op sent to the worker at the end waited (None: >10 s)
    diagnostics: dict = field(default_factory=dict)  # --diagnose: census at warm-up end / end, growth
    rss_mib: list = field(default_factory=list)  # after each settle
    rss_model: list = field(default_factory=list)  # the model on screen at each of those settles
    warmup_settles: int = 0
    click_ms: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rss_growth_mib(self) -> float:
        after = self.rss_mib[self.warmup_settles:]
        return float(max(after) - after[0]) if len(after) > 1 else 0.0

    @property
    def rss_trend_mib(self) -> float:
        """Median RSS of the last quarter of the settles after warm-up minus that of the first: a
        leak climbs, an allocator's plateau does not."""
        after = self.rss_mib[self.warmup_settles:]
        q = len(after) // 4
        return float(np.median(after[-q:]) - np.median(after[:q])) if q else 0.0

    def rss_trend_by_model(self) -> dict:
        """Per model: the median RSS of the last quarter of its settles after warm-up minus that of
        the first quarter (one model is resident at a time, so mixing them measures the models'
        sizes, not growth)."""
        out = {}
        for m in dict.fromkeys(self.rss_model[self.warmup_settles:]):
            after = [r for r, mm in zip(self.rss_mib[self.warmup_settles:], self.rss_model[self.warmup_settles:])
                     if mm == m]
            q = len(after) // 4
            if q:
                out[m] = round(float(np.median(after[-q:]) - np.median(after[:q])), 1)
        return out

    def rss_quartiles(self) -> str:
        after = self.rss_mib[self.warmup_settles:] or [0.0]
        return " / ".join(f"{after[round(q * (len(after) - 1))]:.0f}" for q in (0, 0.25, 0.5, 0.75, 1))

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("rss_mib", "rss_model", "click_ms")}
        d.update(rss_growth_mib=round(self.rss_growth_mib, 1), rss_first_mib=round(self.rss_mib[0], 1) if self.rss_mib else None,
                 rss_last_mib=round(self.rss_mib[-1], 1) if self.rss_mib else None,
                 click_p95_ms=round(p95(self.click_ms), 2) if self.click_ms else None, seconds=round(self.seconds, 1),
                 rss_quartiles_mib=self.rss_quartiles(), rss_trend_mib=round(self.rss_trend_mib, 1),
                 rss_trend_by_model_mib=self.rss_trend_by_model())
        return d


def rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_images(folder: Path, n: int, seed: int) -> list[str]:
    """n images of different sizes and aspects (smooth shapes plus noise), as PNG files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(60, 400)), int(rng.integers(60, 500))
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / (7 + i) + y / 11)], -1) * 220
        img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        paths.append(str(folder / f"soak-{i}-{w}x{h}.png"))
        Image.fromarray(img, "RGB").save(paths[-1])
    return paths


class _Soak:
    def __init__(self, seed: int, events: int, workdir: Path, images: int = 8, models=MODELS,
                 counts: dict | None = None, diagnose: bool = False, trace: bool = False):
        from PySide6 import QtCore, QtWidgets

        from ..core.methods import methods

        self.rng = random.Random(seed)
        # the sequence of event kinds: exact counts, shuffled; else `events` drawn with MIX's weights
        if counts:
            self.plan = [k for k, n in counts.items() for _ in range(n)]
            self.rng.shuffle(self.plan)
            events = len(self.plan)
        else:
            self.plan = None
        self.result = SoakResult(seed, events)
        self.events = events
        self.models = [m if isinstance(m, tuple) else (m, "pretrained") for m in models]
        self.diagnose, self.trace = diagnose or trace, trace
        self.progress = events >= 2000  # a line on stderr every 500 events
        self.app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["vitviz-soak"])
        self.images = write_images(workdir, images, seed)
        self.grad_methods = {m.name for m in methods() if m.needs_grad}
        self.api_cache: dict = {}
        os.environ["VITVIZ_NO_DIALOGS"] = "1"
        from ..gui.main_window import MainWindow
        from ..gui.views import image_view  # noqa: F401  its class-level throttler (a QObject) is made on import

        QtWidgets.QApplication.style()  # the application's style, made on first use: not the window's
        self.threads_before = {t.ident for t in threading.enumerate()}
        self.toplevel_before = {id(w) for w in QtWidgets.QApplication.topLevelWidgets()}
        self.wrappers_before = _wrapper_ids()
        settings = QtCore.QSettings(str(workdir / "soak-settings.ini"), QtCore.QSettings.Format.IniFormat)
        self.win = MainWindow(model=self.models[0][0], weights=self.models[0][1], settings=settings)
        self.win.resize(1280, 800)
        self.win.show()

    # -- events ------------------------------------------------------------------------------------
    def _panel(self):
        return self.win.stack.currentWidget() if self.win.analysis is not None else None

    def send(self, i: int) -> None:
        if self.plan is not None:
            kind = self.plan[i]
            if kind == "ui":
                kind = self.rng.choices(UI_KINDS, weights=[MIX[k] for k in UI_KINDS])[0]
        else:
            kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        panel = self._panel()
        if kind in UI_KINDS and panel is None:
            kind = "image"
        self.result.counts[kind] = self.result.counts.get(kind, 0) + 1
        getattr(self, f"_{kind}")(panel)

    def _image(self, panel) -> None:  # a switch: another image than the one open
        self.win.open_path(self.rng.choice([p for p in self.images if p != self.win.image_path] or self.images))

    def _model(self, panel) -> None:  # a switch: another model than the current one
        current = (self.win.model, self.win.weights)
        self.win.set_model(*self.rng.choice([m for m in self.models if m != current] or self.models))

    def _click(self, panel) -> None:
        from PySide6 import QtCore, QtWidgets
        from PySide6.QtTest import QTest

        views = [v for v in panel.image_views() if v.isVisible() and v._image_size]
        if not views:
            return
        view = self.rng.choice(views)
        w, h = view._image_size
        p = view.view_to_widget(self.rng.uniform(0, w), self.rng.uniform(0, h))
        t0 = time.perf_counter()
        QTest.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, p)
        QtWidgets.QApplication.processEvents()
        self.result.click_ms.append((time.perf_counter() - t0) * 1000)

    def _key(self, panel) -> None:
        from PySide6 import QtGui
        from PySide6.QtTest import QTest

        from ..gui.shortcuts import key_of

        seq = QtGui.QKeySequence(key_of(self.rng.choice(KEYS)))
        target = self.rng.choice([v for v in panel.image_views() if v.isVisible()] or [self.win])
        QTest.keySequence(target, seq)

    def _control(self, panel) -> None:
        from PySide6 import QtWidgets

        kinds = (QtWidgets.QComboBox, QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox, QtWidgets.QSlider,
                 QtWidgets.QAbstractButton)
        controls = [c for c in panel.findChildren(QtWidgets.QWidget) if isinstance(c, kinds)
                    and c.isVisible() and c.isEnabled() and not isinstance(c, QtWidgets.QPushButton)]
        if not controls:
            return
        c = self.rng.choice(controls)
        if isinstance(c, QtWidgets.QComboBox):
            ok = [i for i in range(c.count()) if c.itemData(i) not in self.grad_methods]  # no backward passes
            if ok:
                c.setCurrentIndex(self.rng.choice(ok))
        elif isinstance(c, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox, QtWidgets.QSlider)):
            lo, hi = c.minimum(), c.maximum()
            c.setValue(type(lo)(self.rng.uniform(lo, hi)) if isinstance(lo, float) else self.rng.randint(lo, hi))
        elif c.isCheckable():
            c.toggle()

    # -- settle and check ---------------------------------------------------------------------------
    def settle(self, i: int, timeout: float = 120.0) -> None:
        from PySide6 import QtCore, QtWidgets

        win = self.win
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            QtWidgets.QApplication.processEvents()
            done = (not win.progress.isVisible() and win.analysis is not None
                    and win._shown_setup == win._submitted_setup
                    and (win.shown_image_name, win.shown_image_path) == (win.image_name, win.image_path)
                    and not self._grad_busy())
            if done:
                break
            time.sleep(0.005)
        else:
            self.result.stale.append((i, "", f"not settled after {timeout:.0f} s"))
            return
        for _ in range(3):
            QtWidgets.QApplication.processEvents()
        # what a running event loop does and processEvents() does not: delete the objects given to
        # deleteLater() (replaced method forms, ...); without this they pile up until the window closes
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
        self.result.settles += 1
        self.check(i)
        self.result.rss_mib.append(rss_mib())
        self.result.rss_model.append(win.model)

    def _grad_busy(self) -> bool:
        """A gradient method's map (relevance, ...) is still being computed in the worker."""
        return bool(getattr(self._panel(), "method_busy", False))

    def api_analysis(self, path: str, model: str, weights: str = "pretrained"):
        from ..core.api import analyze

        key = (path, model, weights)
        if key not in self.api_cache:
            # the worker shares the model (api's cache): wait until it is idle, so that two forwards
            # never run on one module at once (capture hooks on a shared module mix up; the app
            # itself runs every forward in the one worker thread)
            if self.win is not None:
                self._pending()
            self.api_cache.clear()  # one at a time: the soak measures the window's memory, not this cache
            self.api_cache[key] = analyze(path, model=model, weights=weights)
        return self.api_cache[key]

    def check(self, i: int) -> None:
        from ..core.colormaps import overlay_rgba
        from ..core.families import get_family
        from ..core.figures import MapView

        win, panel = self.win, self._panel()
        a = win.analysis
        if a.model_name != win.model or win.shown_image_path != win.image_path:
            self.result.stale.append((i, "", f"shows {a.model_name} on {win.shown_image_name}, "
                                             f"asked {win.model} on {win.image_name}"))
            return
        ref = self.api_analysis(win.image_path, win.model, win.weights)
        state = panel.state.replace(**panel.display.settings())
        sources = get_family(a.family).build_figures(ref, state, view_rect=panel.view_rect())
        by_title = {v.title: v for v in sources.views.values() if isinstance(v, MapView)}
        names = {id(getattr(panel, attr)): fn(state) for attr, fn in VIEW_NAMES.items() if hasattr(panel, attr)}
        for view in panel.image_views():
            painted = view.overlay.image
            if not view.isVisible():
                continue
            mv = sources.views.get(names.get(id(view)), by_title.get(view.title_text()))
            if not isinstance(mv, MapView):
                self.result.views_unmatched += painted is not None
                continue
            if mv.values is None:
                if painted is not None:
                    self.result.stale.append((i, mv.title, "a map is painted where the API has none"))
                continue
            lo, hi = mv.levels if mv.levels is not None else _minmax(mv.values)
            want = overlay_rgba(mv.values, sources.colormap, lo, hi if hi > lo else lo + 1e-6, mv.opacity, mv.overlay)
            self.result.views_checked += 1
            if painted is None or painted.shape != want.shape or np.abs(painted.astype(int) - want).max() > 1:
                why = "nothing painted" if painted is None else (
                    f"shape {painted.shape} != {want.shape}" if painted.shape != want.shape else
                    f"max difference {np.abs(painted.astype(int) - want).max()}")
                self.result.stale.append((i, mv.title, why))

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> SoakResult:
        from PySide6 import QtCore, QtWidgets

        res = self.result
        old_hook = sys.excepthook
        sys.excepthook = lambda t, e, tb: res.exceptions.append(f"{t.__name__}: {e}")
        old_handler = QtCore.qInstallMessageHandler(self._qt_message)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.win.set_image_list([self.images[0]])
                self.settle(-1)
                for m in self.models[1:]:  # warm-up: every model loaded once
                    self.win.set_model(*m)
                    self.settle(-1)
                self.win.set_model(*self.models[0])
                self.settle(-1)
                res.warmup_settles = len(res.rss_mib)
                if self.diagnose:
                    res.diagnostics["warmup"] = self._census()
                i, next_settle = 0, self.rng.randint(3, 30)
                while i < self.events:
                    self.send(i)
                    i += 1
                    if i == next_settle or i == self.events:
                        self.settle(i)
                        next_settle = i + self.rng.randint(3, 30)
                    if self.progress and i % 500 == 0:
                        print(f"[soak] {i}/{self.events} events, {time.perf_counter() - t0:.0f} s, "
                              f"RSS {res.rss_mib[-1]:.0f} MiB, {len(res.stale)} stale, "
                              f"{len(res.exceptions)} exceptions", file=sys.stderr, flush=True)
                res.worker_pending = self._pending()
                if self.diagnose:
                    res.diagnostics["end"] = self._census()
                    res.diagnostics["growth"] = _growth(res.diagnostics["warmup"], res.diagnostics["end"])
                    for d in (res.diagnostics["warmup"], res.diagnostics["end"]):
                        d.pop("snapshot", None)
                        d.pop("objects")
                res.warnings += [f"{w.category.__name__}: {w.message}" for w in caught
                                 if "random weights" not in str(w.message).lower()]
        finally:
            self.win.close()
            self.win.deleteLater()
            self.win = None
            for _ in range(3):
                QtWidgets.QApplication.processEvents()
                QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
            sys.excepthook = old_hook
            QtCore.qInstallMessageHandler(old_handler)
            res.seconds = time.perf_counter() - t0
        time.sleep(0.2)
        import gc

        gc.collect()  # what only reference cycles held goes now (pyqtgraph's items are in cycles)
        for _ in range(2):
            QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
            QtWidgets.QApplication.processEvents()
        res.threads_left = [t.name for t in threading.enumerate()
                            if t.ident not in self.threads_before and t.is_alive() and not t.daemon]
        res.qthreads_left = [t.objectName() or type(t).__name__ for t in _wrappers(QtCore.QThread)
                             if id(t) not in self.wrappers_before and t.isRunning()]
        res.toplevel_left = sorted(type(w).__name__ for w in QtWidgets.QApplication.topLevelWidgets()
                                   if id(w) not in self.toplevel_before)
        left = [type(w).__name__ for w in _wrappers(QtCore.QObject) if id(w) not in self.wrappers_before
                and not isinstance(w, QtWidgets.QStyle)]  # styles are the application's, shared, made on use
        res.qobjects_left = dict(sorted(((k, left.count(k)) for k in set(left)), key=lambda kv: -kv[1])[:20])
        return res

    def _pending(self) -> float | None:
        """Seconds a no-op posted to the worker thread after everything else takes to run there: ~0
        when the worker's queue is empty; None when it does not run within 10 s (work still queued)."""
        from PySide6 import QtCore

        done = threading.Event()
        probe = _make_probe_class()(done)
        probe.moveToThread(self.win.runner._thread)
        t0 = time.perf_counter()
        QtCore.QMetaObject.invokeMethod(probe, "ping", QtCore.Qt.ConnectionType.QueuedConnection)
        ok = done.wait(10.0)
        probe.deleteLater()
        return round(time.perf_counter() - t0, 3) if ok else None

    def _census(self) -> dict:
        """What the process holds: RSS (and after malloc_trim), Python objects by type, live Qt wrappers,
        graphics items in the window's scenes, Python heap (tracemalloc) when traced."""
        import gc

        from PySide6 import QtWidgets

        gc.collect()
        out = {"rss_mib": round(rss_mib(), 1)}
        types: dict = {}
        for o in gc.get_objects():
            n = type(o).__name__
            types[n] = types.get(n, 0) + 1
        out["objects"] = types
        out["qt_wrappers"] = len(_wrapper_ids())
        out["widgets"] = len(QtWidgets.QApplication.allWidgets())
        scenes = {id(v.scene()): v.scene() for v in self.win.findChildren(QtWidgets.QGraphicsView) if v.scene()}
        out["graphics_items"] = sum(len(sc.items()) for sc in scenes.values())
        if self.trace:
            import tracemalloc

            if not tracemalloc.is_tracing():
                tracemalloc.start(8)
            out["snapshot"] = tracemalloc.take_snapshot()
            out["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        out["rss_trimmed_mib"] = round(_trimmed_rss(), 1)
        return out

    def _qt_message(self, mode, context, message) -> None:
        from PySide6 import QtCore

        benign = ("propagateSizeHints",)  # the offscreen platform says it on every window
        if mode != QtCore.QtMsgType.QtDebugMsg and not any(b in message for b in benign):
            self.result.warnings.append(f"Qt: {message}")


def _make_probe_class():
    from PySide6 import QtCore

    class Probe(QtCore.QObject):
        def __init__(self, event: threading.Event):
            super().__init__()
            self._event = event

        @QtCore.Slot()
        def ping(self) -> None:
            self._event.set()

    return Probe


def _wrappers(kind=None) -> list:
    """The live Python wrappers of Qt objects (of `kind`)."""
    import shiboken6

    return [w for w in shiboken6.getAllValidWrappers() if kind is None or isinstance(w, kind)]


def _wrapper_ids() -> set:
    return {id(w) for w in _wrappers()}


def _trimmed_rss() -> float:
    """RSS after glibc gave its free pages back (malloc_trim): what is really in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return rss_mib()


def _growth(a: dict, b: dict, top: int = 15) -> dict:
    """Census b minus census a: the object types that grew most, the counts, tracemalloc's top lines."""
    grew = {k: b["objects"].get(k, 0) - a["objects"].get(k, 0) for k in set(a["objects"]) | set(b["objects"])}
    out = {"objects": dict(sorted(((k, v) for k, v in grew.items() if v), key=lambda kv: -abs(kv[1]))[:top])}
    for k in ("rss_mib", "rss_trimmed_mib", "qt_wrappers", "widgets", "graphics_items", "traced_mib"):
        if k in a and k in b:
            out[k] = round(b[k] - a[k], 1)
    if "snapshot" in b and "snapshot" in a:
        stats = b["snapshot"].compare_to(a["snapshot"], "traceback")
        out["tracemalloc"] = [f"{st.size_diff / 2**20:+.2f} MiB {st.count_diff:+d} blocks: "
                              + " <- ".join(f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}"
                                            for f in list(st.traceback)[-4:]) for st in stats[:top]]
    return out


def _minmax(values) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def run_soak(seed: int = 0, events: int = 300, workdir: str | os.PathLike | None = None, images: int = 8,
             models=MODELS, counts: dict | None = None, diagnose: bool = False, trace: bool = False) -> SoakResult:
    """`events` random events (MIX's weights), or exactly `counts` (kind -> n, "ui" a click / key /
    control change) in a shuffled order, e.g. FULL_COUNTS with FULL_MODELS."""
    with tempfile.TemporaryDirectory(prefix="vitviz-soak-") as tmp:
        return _Soak(seed, events, Path(workdir or tmp), images, models, counts, diagnose, trace).run()


def run(ctx) -> list[Row]:
    seed = 20
    if ctx.quick:
        res = run_soak(seed, 200, ctx.workdir)
    else:
        res = run_soak(seed, workdir=ctx.workdir, models=FULL_MODELS, counts=FULL_COUNTS)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
    models = ", ".join(f"{m} ({w})" for m, w in (FULL_MODELS if not ctx.quick else [(m, "pretrained") for m in MODELS]))
    note = (f"seed {seed}, {res.events} events ({counts}; models {models}), {res.settles} settles, "
            f"{res.views_checked} views compared with the API, {res.seconds:.0f} s; "
            f"RSS {res.rss_mib[0]:.0f} -> {res.rss_mib[-1]:.0f} MiB")
    (m_exc, _, g_exc), (m_stale, _, g_stale), (m_thr, _, g_thr), (m_obj, _, g_obj), (m_rss, _, g_rss), \
        (m_click, _, _) = metrics()
    leaked = sum(res.qobjects_left.values()) + len(res.toplevel_left)
    return [Row(m_exc, len(res.exceptions), "count", g_exc, note=note + "".join(f"; {e}" for e in res.exceptions[:3])),
            Row(m_stale, len(res.stale), "count", g_stale, note="; ".join(map(str, res.stale[:10]))),
            Row(m_thr, len(res.threads_left) + len(res.qthreads_left), "count", g_thr,
                note=", ".join(res.threads_left + res.qthreads_left) + f"; a no-op sent to the worker at the end ran "
                     + (f"after {res.worker_pending:.3f} s (its queue was empty)" if res.worker_pending is not None
                        else "not within 10 s (work still queued)")),
            Row(m_obj, leaked, "count", g_obj,
                note=f"top-level widgets {res.toplevel_left}; Qt objects by class {res.qobjects_left}"),
            Row(m_rss, res.rss_growth_mib, "MiB", g_rss,
                note=f"max RSS after the {res.warmup_settles} warm-up settles (each model once) minus the first; "
                     f"RSS at 0/25/50/75/100% of the settles: {res.rss_quartiles()} MiB; median of the last "
                     f"quarter minus the first: {res.rss_trend_mib:+.1f} MiB, per model "
                     f"{res.rss_trend_by_model()} MiB"),
            Row(m_click, p95(res.click_ms) if res.click_ms else None, "ms", None,
                note=f"{len(res.click_ms)} clicks: QTest click, then processEvents() (the repaint) returned; "
                     "inference may be running meanwhile")]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m vitviz.bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300, help="random events (default 300)")
    ap.add_argument("--full", action="store_true",
                    help="the issue's counts: " + ", ".join(f"{n} {k}" for k, n in FULL_COUNTS.items())
                         + " events; models " + ", ".join(m for m, _ in FULL_MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--diagnose", action="store_true", help="object counts at the end of the warm-up and the end")
    ap.add_argument("--tracemalloc", action="store_true", help="with --diagnose: Python allocations that grew")
    ap.add_argument("--json", metavar="FILE", help="also write the summary to FILE")
    args = ap.parse_args(argv)
    kw = dict(models=FULL_MODELS, counts=FULL_COUNTS) if args.full else {}
    res = run_soak(args.seed, args.events, diagnose=args.diagnose, trace=args.tracemalloc, **kw)
    summary = res.summary()
    summary["rss_mib"] = [round(x, 1) for x in res.rss_mib]
    summary["rss_model"] = res.rss_model
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
