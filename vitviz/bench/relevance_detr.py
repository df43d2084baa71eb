"""Row group: DETR relevance for a detection the app has not explained yet (forward with gradients,
one backward, the encoder-decoder relevance rules) against one plain no-grad forward of the same
model on the same input, alternated in the same run. Each relevance call explains another object
query, so none is served from the backward cache.
"""
from __future__ import annotations

import dataclasses
import time

from .capture import QUICK_DETR_SHORT, resolve_model
from .context import BenchContext
from .metrics import Row, alternate, median, missing

METRIC = "DETR relevance for a detection (forward + backward) / one plain forward"
GOAL = "<= 3"  # the goal for the ViT-B/16 and Swin-T rows, kept for DETR
MODEL = "detr"  # the DETR-R50 entry (vitviz.bench.capture.resolve_model)


def metrics() -> list[tuple[str, str, str | None]]:
    return [(METRIC, "x", GOAL)]


def run(ctx: BenchContext) -> list[Row]:
    import torch

    from ..core.api import analyze, get_model
    from ..core.capture.grad_detr import pixel_mask
    from ..core.image import load_image
    from ..core.models.registry import get_spec

    try:
        name = resolve_model(MODEL)
    except LookupError as exc:
        return [missing(METRIC, "x", GOAL, f"not available: {exc}")]
    spec, note = get_spec(name), ""
    if ctx.quick:
        spec = dataclasses.replace(spec, name=f"{name}@{QUICK_DETR_SHORT}", preprocess=dataclasses.replace(
            spec.preprocess, size=QUICK_DETR_SHORT, max_size=QUICK_DETR_SHORT * 5 // 3))
        note = f"; --quick: input shorter side {QUICK_DETR_SHORT} instead of {get_spec(name).preprocess.size}"
    loaded = get_model(spec, "random", ctx.device)
    a = analyze(load_image(str(ctx.image_path)), model=loaded)
    x = torch.from_numpy(a.model_input)[None].to(loaded.device)
    mask = torch.from_numpy(pixel_mask(a))[None].to(loaded.device)
    queries = iter(range(a.num_queries))

    def relevance() -> float:
        t0 = time.perf_counter()
        a.explain("relevance", target=next(queries))
        return time.perf_counter() - t0

    def plain() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            loaded.module(x, mask)
        return time.perf_counter() - t0

    relevance(), plain()  # warm-up
    n = min(ctx.repeats(6, 1), a.num_queries - 1)
    rel, fwd = alternate(relevance, plain, n)
    return [Row(METRIC, median(rel) / median(fwd), "x", GOAL, note=(
        f"{name}, random weights, {ctx.device}, {ctx.image_path.stem} ({a.feature_shape[0]}x"
        f"{a.feature_shape[1]} cells, {a.num_queries} queries): medians of {n} alternated runs, relevance "
        f"{median(rel) * 1e3:.0f} ms (a new object query each time) vs plain forward {median(fwd) * 1e3:.0f} ms"
        f"{note}"))]
