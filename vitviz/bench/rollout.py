"""Row group 5: rollout for each setting change (query, discard ratio, head fusion) in vitviz against
the popular vit-explain script's rollout (vitviz.bench.vit_explain: a full recompute per setting),
on the same captured attention, alternated in the same run; and vitviz against the float64 loop.

The script gets its natural input (per-layer float32 torch tensors, made before timing); vitviz
starts from what the app holds (the analysis' float16 attention) after RolloutEngine.prepare(),
which the app runs in the background once per image (its cost is a row of its own).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .context import BenchContext
from .metrics import Row, alternate, median, missing

# (label, registry name, input size)
MODELS = (("ViT-B/16", "vit_b_16", 224), ("ViT-L/16 @384", "vit_l_16", 384))
GOAL_SPEEDUP = ">= 10"
GOAL_DIFF = "<= 1e-06"
CHANGES = ("query", "discard ratio", "head fusion")


# row names, formatted with the setting change and the model label
SPEED_METRIC = "Rollout, new {change}: vit-explain recompute / vitviz, {label}"
DIFF_METRIC = "Rollout max abs diff vs float64 reference, {label}"
PREP_METRIC = "Rollout preparation per image (background, 3 fusions), {label}"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    rows = []
    for label, _, _ in MODELS:
        rows += [(SPEED_METRIC.format(change=c, label=label), "x", GOAL_SPEEDUP) for c in CHANGES]
        rows += [(DIFF_METRIC.format(label=label), "", GOAL_DIFF), (PREP_METRIC.format(label=label), "s", None)]
    return rows


def model_spec(name: str, size: int | None):
    """The registry spec of `name`, at `size` x `size` input when that is not its own size."""
    from ..core.models.registry import Preprocess, get_spec

    spec = get_spec(name)
    if size is None or size == spec.preprocess.size:
        return spec
    return dataclasses.replace(spec, name=f"{name}@{size}", label=f"{spec.label} @{size}",
                               preprocess=Preprocess("center_crop", size, resize=size),
                               pretrained_preprocess=None)


def _analysis(ctx: BenchContext, name: str, size: int):
    """An earlier step's analysis of the bench image, or a fresh analyze() (random weights)."""
    spec = model_spec(name, size)
    analysis = ctx.analyses.get(spec.name)
    if analysis is None:
        from ..core.api import analyze, get_model

        analysis = analyze(str(ctx.image_path), model=get_model(spec, "random", ctx.device))
        ctx.analyses[spec.name] = analysis
    return analysis


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _model_rows(ctx: BenchContext, label: str, analysis) -> list[Row]:
    import torch

    from ..core.analysis.rollout import RolloutEngine, rollout_reference
    from . import vit_explain

    attn = analysis.attn
    L, H, N, _ = attn.shape
    peer_input = [torch.from_numpy(attn[i][None].astype(np.float32)) for i in range(L)]
    engine = RolloutEngine(attn)
    prep = _timed(engine.prepare)
    engine.row(0, "mean", 0.0)
    vit_explain.rollout(peer_input, 0.0, "mean")  # warm-up of both
    rng = np.random.default_rng(0)
    n = ctx.repeats(9, 2)
    rows: list[Row] = []
    how = (f"{analysis.model_name} attention from analyze() ({L} layers x {H} heads, {N} tokens, "
           f"{attn.dtype}); vit-explain's rollout() from float32 torch tensors")

    # new query: the row of another token at unchanged settings (the script recomputes everything)
    def vitviz_query():
        q = int(rng.integers(N))
        return _timed(lambda: engine.row(q, "mean", 0.9))
    engine.row(1, "mean", 0.9)
    t_v, t_p = alternate(vitviz_query, lambda: _timed(lambda: vit_explain.rollout(peer_input, 0.9, "mean")), n)
    rows.append(_speed_row("query", label, t_p, t_v, n, f"{how}; head fusion mean, discard 0.9, a random query"))

    # new discard ratio: never used before on this engine
    ratios = iter(np.round(np.arange(0.02, 0.98, 0.01), 2))
    current = {}

    def vitviz_ratio():
        r = current["r"] = float(next(ratios))
        return _timed(lambda: engine.row(0, "mean", r))
    t_v, t_p = alternate(vitviz_ratio, lambda: _timed(lambda: vit_explain.rollout(
        peer_input, current.get("r", 0.5), "mean")), n)
    rows.append(_speed_row("discard ratio", label, t_p, t_v, n,
                           f"{how}; head fusion mean, a discard ratio not used before each time, class token"))

    # new head fusion: every discarded stack and row dropped first, so the change pays its full price
    fusions = iter(["max", "min", "mean"] * (n + 1))

    def vitviz_fusion():
        f = current["f"] = next(fusions)
        engine._stacks.clear()
        engine._rows.clear()
        return _timed(lambda: engine.row(0, f, 0.9))
    t_v, t_p = alternate(vitviz_fusion, lambda: _timed(lambda: vit_explain.rollout(
        peer_input, 0.9, current.get("f", "max"))), n)
    rows.append(_speed_row("head fusion", label, t_p, t_v, n,
                           f"{how}; cycling max / min / mean at discard 0.9, caches of discarded layers cleared"))

    # values: vitviz against the float64 loop, on the captured attention and on peaked attention
    diffs = []
    for f, r in (("mean", 0.0), ("max", 0.9)):
        ref = rollout_reference(attn.astype(np.float32), f, r)
        diffs.append(float(np.max(np.abs(RolloutEngine(attn).matrix(f, r) - ref))))
    peaked = rng.random(attn.shape, dtype=np.float32) ** 8
    peaked = (peaked / peaked.sum(-1, keepdims=True)).astype(np.float32)
    # discarding is discontinuous: fused in float32 (vitviz) or float64 (the loop), two near-equal
    # weights can swap order, so the discard check gets the fused layers both sides use
    fused = RolloutEngine(peaked)._fused("mean").numpy()[:, None]
    ref = rollout_reference(fused, "mean", 0.9)
    diff_peaked = float(np.max(np.abs(RolloutEngine(peaked).matrix("mean", 0.9) - ref)))
    peer = vit_explain.rollout_result([torch.from_numpy(peaked[i][None]) for i in range(L)], 0.0, "mean",
                                      row_normalise=True)[0].double().numpy()
    diff_peer = float(np.max(np.abs(RolloutEngine(peaked).matrix("mean", 0.0) - peer)))
    rows.append(Row(DIFF_METRIC.format(label=label), max(*diffs, diff_peaked), "", GOAL_DIFF, note=(
        f"max |vitviz matrix - rollout_reference| over the {N}x{N} matrix: {diffs[0]:.1e} (mean, discard 0) "
        f"and {diffs[1]:.1e} (max, discard 0.9) on the captured attention, {diff_peaked:.1e} (discard 0.9) on "
        f"peaked synthetic attention of the same shape (uniform ** 8, rows normalised), heads fused by vitviz "
        f"for both; the largest is the "
        f"value. Against vit-explain with its normalisation made row-wise (mean, discard 0, peaked): "
        f"{diff_peer:.1e}")))
    rows.append(Row(PREP_METRIC.format(label=label), prep, "s", None, note=(
        "RolloutEngine.prepare(): heads fused in torch for mean / max / min, each layer's weights sorted "
        "once (any discard threshold is then a lookup); the GUI runs it in a background thread after "
        "the first map")))
    return rows


def _speed_row(change: str, label: str, t_peer, t_vitviz, n: int, how: str) -> Row:
    ratios = [p / v for p, v in zip(t_peer, t_vitviz)]
    return Row(SPEED_METRIC.format(change=change, label=label), median(ratios), "x", GOAL_SPEEDUP, note=(
        f"{how}; median of {n} alternated pairs: vit-explain {median(t_peer) * 1e3:.1f} ms, "
        f"vitviz {median(t_vitviz) * 1e3:.2f} ms"))


def run(ctx: BenchContext) -> list[Row]:
    rows = []
    for label, name, size in MODELS:
        try:
            rows += _model_rows(ctx, label, _analysis(ctx, name, size))
        except Exception as exc:
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            rows += [missing(m, unit, goal, why) for m, unit, goal in metrics() if m.endswith(label)]
    return rows
