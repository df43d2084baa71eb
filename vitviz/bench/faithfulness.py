"""Row group: one deletion + insertion run (50 steps: 2 x 51 perturbed images, vitviz.core.faithfulness)
against one plain batched forward of as many images through the same model, in the same batches,
alternated in the same run. The goal says the curves cost their forwards and little else (building
the perturbed images, the blur, the ranking of the map).

The model is the rollout group's first (vitviz.bench.rollout.MODELS: ViT-B/16 at 224), read when the
group runs, so a test that swaps those models swaps this one too; rollout's map ranks the pixels.
"""
from __future__ import annotations

import time

import numpy as np

from .context import BenchContext
from .metrics import Row, alternate, median

STEPS = 50
BATCH = 16
GOAL = "<= 1.3"
METRIC = "Deletion + insertion ({steps} steps, {n} images) / one batched forward of {n} images, {label}"


def _model():
    from . import rollout

    return rollout.MODELS[0]


def metrics() -> list[tuple[str, str, str | None]]:
    label = _model()[0]
    return [(METRIC.format(steps=STEPS, n=2 * (STEPS + 1), label=label), "x", GOAL)]


def run(ctx: BenchContext) -> list[Row]:
    from ..core.faithfulness import predictor
    from ..core.gradients import model_of
    from .rollout import model_spec

    label, name, size = _model()
    spec = model_spec(name, size)
    analysis = ctx.analyses.get(spec.name)
    if analysis is None:
        from ..core.api import analyze, get_model

        analysis = analyze(str(ctx.image_path), model=get_model(spec, "random", ctx.device))
        ctx.analyses[spec.name] = analysis
    n = 2 * (STEPS + 1)
    predict = predictor(model_of(analysis))
    x = np.asarray(analysis.model_input, np.float32)
    images = np.repeat(x[None], n, axis=0) + np.random.default_rng(0).normal(0, 0.01, (n, *x.shape)).astype(np.float32)
    analysis.explain("rollout")  # the map is the view's, computed before the user asks for curves

    def curves() -> float:
        t0 = time.perf_counter()
        analysis.faithfulness("rollout", steps=STEPS, batch_size=BATCH)
        return time.perf_counter() - t0

    def plain() -> float:
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            predict(images[i:i + BATCH])
        return time.perf_counter() - t0

    curves(), plain()  # warm-up
    reps = ctx.repeats(5, 1)
    tc, tp = alternate(curves, plain, reps)
    return [Row(metrics()[0][0], median(tc) / median(tp), "x", GOAL, note=(
        f"{spec.name}, random weights, {ctx.device}, input {x.shape[1]}x{x.shape[2]}: medians of {reps} "
        f"alternated runs, deletion + insertion {median(tc) * 1e3:.0f} ms vs plain forward of {n} images in "
        f"batches of {BATCH} {median(tp) * 1e3:.0f} ms"))]
