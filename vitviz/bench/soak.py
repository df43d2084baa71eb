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

    python -m vitviz.bench.soak [--events N] [--seed S]   (prints the result as JSON)
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
    threads_left: list = field(default_factory=list)
    rss_mib: list = field(default_factory=list)  # after each settle
    warmup_settles: int = 0
    click_ms: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rss_growth_mib(self) -> float:
        after = self.rss_mib[self.warmup_settles:]
        return float(max(after) - after[0]) if len(after) > 1 else 0.0

    def rss_quartiles(self) -> str:
        after = self.rss_mib[self.warmup_settles:] or [0.0]
        return " / ".join(f"{after[round(q * (len(after) - 1))]:.0f}" for q in (0, 0.25, 0.5, 0.75, 1))

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("rss_mib", "click_ms")}
        d.update(rss_growth_mib=round(self.rss_growth_mib, 1), rss_first_mib=round(self.rss_mib[0], 1) if self.rss_mib else None,
                 rss_last_mib=round(self.rss_mib[-1], 1) if self.rss_mib else None,
                 click_p95_ms=round(p95(self.click_ms), 2) if self.click_ms else None, seconds=round(self.seconds, 1),
                 rss_quartiles_mib=self.rss_quartiles())
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
    def __init__(self, seed: int, events: int, workdir: Path, images: int = 8, models=MODELS):
        from PySide6 import QtCore, QtWidgets

        from ..core.methods import methods

        self.rng = random.Random(seed)
        self.result = SoakResult(seed, events)
        self.events, self.models = events, list(models)
        self.app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["vitviz-soak"])
        self.images = write_images(workdir, images, seed)
        self.grad_methods = {m.name for m in methods() if m.needs_grad}
        self.api_cache: dict = {}
        os.environ["VITVIZ_NO_DIALOGS"] = "1"
        from ..gui.main_window import MainWindow

        self.threads_before = {t.ident for t in threading.enumerate()}
        settings = QtCore.QSettings(str(workdir / "soak-settings.ini"), QtCore.QSettings.Format.IniFormat)
        self.win = MainWindow(model=self.models[0], weights="pretrained", settings=settings)
        self.win.resize(1280, 800)
        self.win.show()

    # -- events ------------------------------------------------------------------------------------
    def _panel(self):
        return self.win.stack.currentWidget() if self.win.analysis is not None else None

    def send(self, i: int) -> None:
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        panel = self._panel()
        if kind in ("click", "key", "control") and panel is None:
            kind = "image"
        self.result.counts[kind] = self.result.counts.get(kind, 0) + 1
        getattr(self, f"_{kind}")(panel)

    def _image(self, panel) -> None:
        self.win.open_path(self.rng.choice(self.images))

    def _model(self, panel) -> None:
        self.win.set_model(self.rng.choice(self.models), "pretrained")

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
        from PySide6 import QtWidgets

        win = self.win
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            QtWidgets.QApplication.processEvents()
            done = (not win.progress.isVisible() and win.analysis is not None
                    and win._shown_setup == win._submitted_setup
                    and (win.shown_image_name, win.shown_image_path) == (win.image_name, win.image_path))
            if done:
                break
            time.sleep(0.005)
        else:
            self.result.stale.append((i, "", f"not settled after {timeout:.0f} s"))
            return
        for _ in range(3):
            QtWidgets.QApplication.processEvents()
        self.result.settles += 1
        self.check(i)
        self.result.rss_mib.append(rss_mib())

    def api_analysis(self, path: str, model: str):
        from ..core.api import analyze

        key = (path, model)
        if key not in self.api_cache:
            self.api_cache.clear()  # one at a time: the soak measures the window's memory, not this cache
            self.api_cache[key] = analyze(path, model=model, weights="pretrained")
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
        ref = self.api_analysis(win.image_path, win.model)
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
                    self.win.set_model(m, "pretrained")
                    self.settle(-1)
                self.win.set_model(self.models[0], "pretrained")
                self.settle(-1)
                res.warmup_settles = len(res.rss_mib)
                i, next_settle = 0, self.rng.randint(3, 30)
                while i < self.events:
                    self.send(i)
                    i += 1
                    if i == next_settle or i == self.events:
                        self.settle(i)
                        next_settle = i + self.rng.randint(3, 30)
                res.warnings += [f"{w.category.__name__}: {w.message}" for w in caught
                                 if "random weights" not in str(w.message).lower()]
        finally:
            self.win.close()
            self.win.deleteLater()
            QtWidgets.QApplication.processEvents()
            sys.excepthook = old_hook
            QtCore.qInstallMessageHandler(old_handler)
            res.seconds = time.perf_counter() - t0
        time.sleep(0.2)
        res.threads_left = [t.name for t in threading.enumerate()
                            if t.ident not in self.threads_before and t.is_alive() and not t.daemon]
        return res

    def _qt_message(self, mode, context, message) -> None:
        from PySide6 import QtCore

        benign = ("propagateSizeHints",)  # the offscreen platform says it on every window
        if mode != QtCore.QtMsgType.QtDebugMsg and not any(b in message for b in benign):
            self.result.warnings.append(f"Qt: {message}")


def _minmax(values) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def run_soak(seed: int = 0, events: int = 300, workdir: str | os.PathLike | None = None, images: int = 8) -> SoakResult:
    with tempfile.TemporaryDirectory(prefix="vitviz-soak-") as tmp:
        return _Soak(seed, events, Path(workdir or tmp), images).run()


def run(ctx) -> list[Row]:
    seed, events = 20, (200 if ctx.quick else 5000)
    res = run_soak(seed, events, ctx.workdir)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
    note = (f"seed {seed}, {events} events ({counts}), {res.settles} settles, {res.views_checked} views compared "
            f"with the API, {res.seconds:.0f} s; RSS {res.rss_mib[0]:.0f} -> {res.rss_mib[-1]:.0f} MiB")
    (m_exc, _, g_exc), (m_stale, _, g_stale), (m_thr, _, g_thr), (m_rss, _, g_rss), (m_click, _, _) = metrics()
    return [Row(m_exc, len(res.exceptions), "count", g_exc, note=note + "".join(f"; {e}" for e in res.exceptions[:3])),
            Row(m_stale, len(res.stale), "count", g_stale, note="; ".join(map(str, res.stale[:10]))),
            Row(m_thr, len(res.threads_left), "count", g_thr, note=", ".join(res.threads_left)),
            Row(m_rss, res.rss_growth_mib, "MiB", g_rss,
                note=f"max RSS after the {res.warmup_settles} warm-up settles (each model once) minus the first; "
                     f"RSS at 0/25/50/75/100% of the settles: {res.rss_quartiles()} MiB"),
            Row(m_click, p95(res.click_ms) if res.click_ms else None, "ms", None,
                note=f"{len(res.click_ms)} clicks: QTest click, then processEvents() (the repaint) returned; "
                     "inference may be running meanwhile")]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(run_soak(args.seed, args.events).summary(), indent=1))
