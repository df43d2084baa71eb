"""Many-image rows: analyze_many throughput per batch size against analyze() one image at a time,
resident memory over a long run with `keep` of statistics only, and the Ray engine against the
local one.

    vitviz bench --only batch            the `batch` group: throughput and memory rows
    vitviz bench --only ray              the `ray` group (opt-in: needs `vitviz[ray]`, starts a Ray)
    python -m vitviz.bench.batch [--quick] [--json FILE] [--device cuda] [--no-ray]

Throughput: in-memory 320x240 uint8 images (decode is not counted; preprocessing, the captured
forward and the reducer are), keep="predictions", one warm-up batch first; the batch sizes are
measured in alternating rounds and each rate is images / the median round time. Memory: current
RSS (not the peak) after the first batch and its maximum over the run, in this process. Ray:
`run_stats` over a folder of PNGs on a local Ray, Ray started beforehand (its start-up is reported
apart), against the local engine on the same folder.

The second model is the rollout group's first (vitviz.bench.rollout.MODELS: ViT-B/16), read when
the group runs, so a test that swaps those models swaps this one too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH_SIZES = (1, 8, 32)
GOAL_RATIO = ">= 1.5"
GOAL_RSS = "<= 100"
RSS_BATCH = 16
DEMO = ("demo ViT", "demo_vit", "pretrained")


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(n)]


def throughput(model: str, weights: str, batch_size: int, n: int, device: str = "cpu",
               repeats: int = 1) -> float:
    """Images per second through analyze_many at `batch_size` (best of `repeats`)."""
    from vitviz.core.api import get_model
    from vitviz.core.batch import analyze_many

    loaded = get_model(model, weights, device)
    imgs = _images(n)
    for _ in analyze_many(imgs[:batch_size], model=loaded, batch_size=batch_size, keep="predictions"):
        pass  # warm-up: first-call allocations, thread pools
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = sum(1 for _ in analyze_many(imgs, model=loaded, batch_size=batch_size, keep="predictions"))
        best = max(best, count / (time.perf_counter() - t0))
    return best


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_growth(model: str, weights: str, n: int, batch_size: int = 16, device: str = "cpu") -> dict:
    """RSS after the first batch and the largest RSS after any later batch, over `n` images
    generated on the fly (a generator: the inputs never all exist at once), keep="stats"."""
    from vitviz.core.batch import analyze_many

    rng = np.random.default_rng(0)
    gen = (rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(n))
    marks: list[int] = []

    def progress(done, total):
        marks.append(current_rss())

    kept = [r.values for r in analyze_many(gen, model=model, weights=weights, device=device,
                                           batch_size=batch_size, keep="stats", progress=progress)]
    first, peak = marks[0], max(marks[1:] or marks)
    return {"images": len(kept), "rss_first_batch_mib": first / 2**20, "rss_max_mib": peak / 2**20,
            "growth_mib": (peak - first) / 2**20}


def ray_vs_local(model: str, weights: str, n: int, batch_size: int = 16, num_cpus: int = 2) -> dict:
    """Seconds and images/s of run_stats over `n` PNG files: the local engine, then Ray (local,
    num_cpus, one actor), Ray's own start-up timed apart."""
    from PIL import Image

    from vitviz.core.batch.folder import Job
    from vitviz.core.batch.run import run_stats
    from vitviz.core.engines import get_engine

    job = Job(model=model, weights=weights, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "imgs")
        src.mkdir()
        for i, img in enumerate(_images(n)):
            Image.fromarray(img).save(src / f"{i:05d}.png")
        t0 = time.perf_counter()
        run_stats(src, Path(tmp, "local"), job)
        local = time.perf_counter() - t0
        engine = get_engine("ray", num_cpus=num_cpus)
        t0 = time.perf_counter()
        ray = engine.start()
        start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            run_stats(src, Path(tmp, "ray"), job, engine)
            remote = time.perf_counter() - t0
        finally:
            ray.shutdown()
    return {"images": n, "local_s": local, "local_img_s": n / local, "ray_start_s": start,
            "ray_s": remote, "ray_img_s": n / remote}


def measured_rates(loaded, sizes: dict[int, int], single: int, rounds: int, warm_up: int = 8) -> dict:
    """Images/s of analyze_many at each batch size (sizes: batch size -> images per round) and of
    analyze() one image at a time (`single` images per round), over `rounds` rounds whose order
    rotates, so drift on a shared machine hits every setting alike; each rate is images / the
    median round time. The results are dropped as they arrive (keep="predictions")."""
    from vitviz.core.api import analyze
    from vitviz.core.batch import analyze_many

    from .metrics import median

    imgs = _images(max([single, *sizes.values()]))
    # warm-up (first-call allocations, thread pools): a batch of `warm_up` images and one analyze()
    for _ in analyze_many(imgs[:warm_up], model=loaded, batch_size=warm_up, keep="predictions", workers=0):
        pass
    analyze(imgs[0], model=loaded)

    def many(bs: int) -> float:
        t0 = time.perf_counter()
        for _ in analyze_many(imgs[:sizes[bs]], model=loaded, batch_size=bs, keep="predictions", workers=0):
            pass
        return time.perf_counter() - t0

    def one() -> float:
        t0 = time.perf_counter()
        for img in imgs[:single]:
            analyze(img, model=loaded)
        return time.perf_counter() - t0

    runs: dict = {k: [] for k in [*sizes, "one"]}
    keys = list(runs)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            runs[k].append(one() if k == "one" else many(k))
    return {k: ((single if k == "one" else sizes[k]) / median(v)) for k, v in runs.items()}


def _models() -> list[tuple[str, str, str]]:
    from . import rollout

    label, name, _ = rollout.MODELS[0]
    return [DEMO, (label, name, "random")]


def rate_metric(label: str, what: str) -> str:
    return f"Many images, {label}: images/s, {what}"


def ratio_metric(label: str) -> str:
    return f"Many images, {label}: analyze_many batch 32 / batch 1 images/s"


RSS_METRIC = f"Many images, {DEMO[0]}: RSS growth after the first batch, keep=stats"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row of the `batch` group, in order."""
    rows: list = []
    for label, _, _ in _models():
        rows.append((rate_metric(label, "analyze() one image at a time"), "img/s", None))
        rows += [(rate_metric(label, f"analyze_many batch {bs}"), "img/s", None) for bs in BATCH_SIZES]
        rows.append((ratio_metric(label), "x", GOAL_RATIO))
    return rows + [(RSS_METRIC, "MiB", GOAL_RSS)]


def run(ctx) -> list:
    """The `batch` group's rows (vitviz bench --only batch)."""
    from vitviz.core.api import get_model

    from .metrics import Row, missing

    rows: list = []
    for label, name, weights in _models():
        big = name != DEMO[1]
        # images per round: a whole batch at least; --quick: one round, a small warm-up
        per = {1: 4, 8: 8, 32: 32} if ctx.quick else ({1: 16, 8: 32, 32: 32} if big else {1: 96, 8: 96, 32: 96})
        single = per[1]
        rounds = 1 if ctx.quick else (2 if big else 3)
        try:
            loaded = get_model(name, weights, ctx.device)
            r = measured_rates(loaded, per, single, rounds, warm_up=2 if ctx.quick else 8)
        except Exception as exc:
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            rows += [missing(m, u, g, why) for m, u, g in metrics() if f", {label}:" in m and m != RSS_METRIC]
            continue
        how = (f"{name}, {weights} weights, {ctx.device}, 320x240 uint8 arrays in memory (no decoding), "
               f"keep=predictions; median of {rounds} rotating round(s)")
        rows.append(Row(rate_metric(label, "analyze() one image at a time"), r["one"], "img/s", None,
                        note=f"{how}, {single} images per round: the one-image path, for comparison"))
        for bs in BATCH_SIZES:
            rows.append(Row(rate_metric(label, f"analyze_many batch {bs}"), r[bs], "img/s", None,
                            note=f"{how}, {per[bs]} images per round, DataLoader in this process"))
        rows.append(Row(ratio_metric(label), r[32] / r[1], "x", GOAL_RATIO, note=(
            f"{r[32]:.1f} / {r[1]:.1f} images/s; analyze_many batch 32 / analyze() one at a time "
            f"{r[32] / r['one']:.2f}x. On a CPU whose cores a batch of 1 already fills, batching has little to "
            "win; on a GPU it is where throughput comes from")))
    n = 100 if ctx.quick else 500
    try:
        m = rss_growth(DEMO[1], DEMO[2], n, batch_size=RSS_BATCH, device=ctx.device)
    except Exception as exc:
        rows.append(missing(RSS_METRIC, "MiB", GOAL_RSS, f"failed: {type(exc).__name__}: {exc}".splitlines()[0]))
    else:
        rows.append(Row(RSS_METRIC, m["growth_mib"], "MiB", GOAL_RSS, note=(
            f"{m['images']} generated 240x320 images (a generator: never all in memory) in batches of {RSS_BATCH}, "
            f"keep=stats, in this process: current RSS {m['rss_first_batch_mib']:.0f} MiB after the first batch, "
            f"at most {m['rss_max_mib']:.0f} MiB after any later one")))
    return rows


def main(argv: list[str] | None = None) -> int:
    """The `batch` group's rows, then the `ray` group's (unless --no-ray), as `vitviz bench` prints them."""
    from .context import BenchContext
    from .metrics import format_table

    p = argparse.ArgumentParser(prog="python -m vitviz.bench.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few images (CI)")
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args(argv)
    from vitviz.cli.bench import run_group

    ctx = BenchContext(device=args.device, quick=args.quick)
    rows = run_group("batch", ctx) + ([] if args.no_ray else run_group("ray", ctx))
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
