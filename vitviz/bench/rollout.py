"""Row group 5: rollout_matrix (vectorised) against rollout_reference (the per-row loop), on the
attention analyze() captured, every query at once, timed alternately in the same run."""
from __future__ import annotations

import time

import numpy as np

from .context import BenchContext
from .metrics import Row, alternate, median, missing

MODELS = (("ViT-B/16", "vit_b_16"), ("ViT-L/16", "vit_l_16"))
GOAL_SPEEDUP = ">= 5"
GOAL_DIFF = "<= 1e-06"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    return [row for label, _ in MODELS for row in ((f"Rollout speed-up vs reference, {label}", "x", GOAL_SPEEDUP),
                                                   (f"Rollout max abs diff vs reference, {label}", "", GOAL_DIFF))]


def _attention(ctx: BenchContext, name: str) -> np.ndarray:
    """The attention of an earlier step's analysis, or a fresh analyze() (random weights)."""
    analysis = ctx.analyses.get(name)
    if analysis is None:
        from ..core.api import analyze

        analysis = analyze(str(ctx.image_path), model=name, weights="random", device=ctx.device)
        ctx.analyses[name] = analysis
    return analysis.attn


def run(ctx: BenchContext) -> list[Row]:
    from ..core.analysis.rollout import rollout_matrix, rollout_reference

    rows = []
    for label, name in MODELS:
        speed_m, diff_m = (f"Rollout speed-up vs reference, {label}", f"Rollout max abs diff vs reference, {label}")
        try:
            attn = _attention(ctx, name)
        except Exception as exc:
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            rows += [missing(speed_m, "x", GOAL_SPEEDUP, why), missing(diff_m, "", GOAL_DIFF, why)]
            continue
        L, H, N, _ = attn.shape
        # Both sides get the attention as float32, converted once here: the float16 -> float
        # conversion is shared work (the app does it once per analysis and fusion, see
        # ViTAnalysis.rollout_matrix) and would otherwise hide the algorithms being compared.
        attn = attn.astype(np.float32)
        fast, ref = rollout_matrix(attn), rollout_reference(attn)  # warm-up, and the check
        diff = float(np.max(np.abs(fast - ref)))
        # random weights attend almost uniformly, which makes agreement easy: check peaked rows too
        peaked = np.random.default_rng(0).random(attn.shape) ** 8
        peaked = (peaked / peaked.sum(-1, keepdims=True)).astype(attn.dtype)
        diff_peaked = float(np.max(np.abs(rollout_matrix(peaked) - rollout_reference(peaked))))

        def t(fn):
            def run_once():
                t0 = time.perf_counter()
                fn(attn)
                return time.perf_counter() - t0
            return run_once

        n = ctx.repeats(9, 2)
        t_fast, t_ref = alternate(t(rollout_matrix), t(rollout_reference), n)
        ratios = [r / f for f, r in zip(t_fast, t_ref)]
        how = (f"{name} attention from analyze() ({L} layers x {H} heads, {N} tokens, {attn.dtype}), "
               f"head fusion mean, no discard, all {N} queries")
        rows.append(Row(speed_m, median(ratios), "x", GOAL_SPEEDUP, note=(
            f"{how}; median of {n} alternated pairs: rollout_matrix {median(t_fast) * 1e3:.0f} ms, "
            f"rollout_reference {median(t_ref) * 1e3:.0f} ms")))
        rows.append(Row(diff_m, max(diff, diff_peaked), "", GOAL_DIFF, note=(
            f"max |rollout_matrix - rollout_reference| over the {N}x{N} matrix: {diff:.1e} on the captured "
            f"attention (random weights: nearly uniform), {diff_peaked:.1e} on peaked synthetic attention "
            f"of the same shape (uniform random ** 8, rows normalised); the larger is the value")))
    return rows
