"""Row group: the analyses window's scatter and the analyses over a folder.

Scatter: the analyses window's distance / entropy scatter for a ViT-L/16's shape (24 layers x 16
heads = 384 dots), redrawn by toggling distance <-> entropy, timed from the toggle until the plot's
viewport has painted (vitviz.bench.gui's paint watcher: nothing forced, the paint a user gets). The
values are synthetic with the right shape (drawing cost does not depend on them; loading ViT-L for
its numbers would only add a minute).
Folder: measure_many (what "Analyse folder..." and `vitviz analyses` run) over PNG files of the
test image's size with the demo ViT, mean attention distance and entropy per image, one process
(no decoding workers), batches of 8, after one warm-up batch.
"""
from __future__ import annotations

import time

import numpy as np

from .context import BenchContext
from .metrics import Row, median, missing

SCATTER = "Analyses scatter built and painted, ViT-L/16 (24 x 16 dots): median"
SCATTER_GOAL = "<= 16"
FOLDER = "Analyses over a folder (distance + entropy), demo ViT, one process"
LAYERS, HEADS = 24, 16
FOLDER_IMAGES = (96, 24)  # full, quick


def metrics() -> list[tuple[str, str, str | None]]:
    return [(SCATTER, "ms", SCATTER_GOAL), (FOLDER, "img/s", None)]


class _LargeViT:
    """What the scatter reads of an analysis: its family (labels say layer, not block)."""

    family = "vit"


def scatter_ms(ctx: BenchContext) -> float:
    from ..gui.analyses_window import AnalysesWindow
    from .gui import GuiBench, _app, _PaintWatcher

    app = _app()
    rng = np.random.default_rng(0)
    depth = np.linspace(20, 150, LAYERS)[:, None]
    win = AnalysesWindow()
    win.resize(980, 640)
    win.analysis = _LargeViT()
    win.results = {"attention_distance": depth + rng.normal(0, 25, (LAYERS, HEADS)),
                   "attention_entropy": rng.uniform(1.0, 5.3, (LAYERS, HEADS))}
    win.show()
    win._draw_scatter()
    viewport = win.scatter_plot.viewport()
    watcher = _PaintWatcher([viewport])
    bench = GuiBench(app, watcher)
    try:
        times = []
        for _ in range(ctx.repeats(40, 6)):
            t, _ = bench.measure(lambda: win.entropy_box.setChecked(not win.entropy_box.isChecked()), [viewport])
            if len(win.scatter.points()) != LAYERS * HEADS:
                raise RuntimeError(f"the scatter shows {len(win.scatter.points())} dots, not {LAYERS * HEADS}")
            times.append(t)
        return median(times) * 1000
    finally:
        watcher.remove()
        win.close()
        win.deleteLater()
        app.processEvents()


def folder_rate(ctx: BenchContext) -> tuple[float, int]:
    from PIL import Image

    from ..core.analysis.over_images import measure_many
    from ..core.api import get_model

    n = ctx.repeats(*FOLDER_IMAGES)
    folder = ctx.workdir / "analyses-folder"
    folder.mkdir(exist_ok=True)
    src = Image.open(ctx.image_path)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.png"
        if not p.exists():
            src.rotate(i * 3.75).save(p)
        paths.append(str(p))
    loaded = get_model("demo_vit", "pretrained", ctx.device)
    names = ["attention_distance", "attention_entropy"]
    measure_many(paths[:8], names, loaded, batch_size=8, workers=0, device=ctx.device)  # warm-up
    t0 = time.perf_counter()
    res = measure_many(paths, names, loaded, batch_size=8, workers=0, device=ctx.device)
    dt = time.perf_counter() - t0
    if len(res.sources) != n:
        raise RuntimeError(f"{len(res.failures)} image(s) failed: {res.failures[:1]}")
    return n / dt, n


def run(ctx: BenchContext) -> list[Row]:
    rows = []
    try:
        rows.append(Row(SCATTER, scatter_ms(ctx), "ms", SCATTER_GOAL,
                        note="distance <-> entropy toggle until the plot has painted; synthetic 24 x 16 "
                             f"values; median of {ctx.repeats(40, 6)}"))
    except Exception as exc:
        rows.append(missing(SCATTER, "ms", SCATTER_GOAL, f"failed: {type(exc).__name__}: {exc}"))
    try:
        rate, n = folder_rate(ctx)
        rows.append(Row(FOLDER, rate, "img/s", None,
                        note=f"{n} PNGs of 640x480 read, preprocessed, forward with capture, both analyses; "
                             f"batches of 8, no decoding workers, {ctx.device}"))
    except Exception as exc:
        rows.append(missing(FOLDER, "img/s", None, f"failed: {type(exc).__name__}: {exc}"))
    return rows


if __name__ == "__main__":
    import sys

    from .metrics import format_table

    print(format_table(run(BenchContext(quick="--quick" in sys.argv))))
