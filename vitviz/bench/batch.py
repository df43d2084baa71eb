"""Many-image rows: analyze_many throughput per batch size, resident memory over a long run with
`keep` of statistics only, and the Ray engine against the local one.

    python -m vitviz.bench.batch [--quick] [--json FILE] [--device cuda]

Throughput: in-memory 320x240 uint8 images (decode is not counted; preprocessing, the captured
forward and the reducer are), keep="predictions", one warm-up batch first, best of `repeats` runs.
Memory: current RSS (not the peak) after the first batch and its maximum over the run, in this
process. Ray: `run_stats` over a folder of PNGs on a local Ray, Ray started beforehand (its start-up
is reported apart), against the local engine on the same folder.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vitviz.bench.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few images (CI)")
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args(argv)
    out: dict = {"device": args.device, "throughput": {}}
    # memory first, so the RSS it reports is of the demo model alone
    out["memory"] = rss_growth("demo_vit", "pretrained", 100 if args.quick else 500, device=args.device)
    m = out["memory"]
    print(f"RSS over {m['images']} images, keep=stats: {m['rss_first_batch_mib']:.0f} MiB after the first "
          f"batch, {m['rss_max_mib']:.0f} MiB max, growth {m['growth_mib']:.1f} MiB (goal <= 100)", flush=True)
    models = (("demo_vit", "pretrained"), ("vit_b_16", "random"))
    for model, weights in models:
        rates = {}
        for bs in (1, 8, 32):
            n = (32 if args.quick else 96) if model == "demo_vit" else (32 if args.quick else 64)
            rates[bs] = throughput(model, weights, bs, max(n, bs), args.device)
            print(f"{model} batch {bs:>2}: {rates[bs]:7.1f} images/s", flush=True)
        rates["ratio_32_1"] = rates[32] / rates[1]
        print(f"{model} batch 32 / batch 1: {rates['ratio_32_1']:.2f}x (goal >= 1.5x on CPU)", flush=True)
        out["throughput"][model] = rates
    if not args.no_ray:
        try:
            r = ray_vs_local("demo_vit", "pretrained", 64 if args.quick else 256)
        except RuntimeError as exc:  # Ray not installed
            print(f"Ray: {exc}")
        else:
            out["ray"] = r
            print(f"{r['images']} PNGs: local engine {r['local_s']:.1f} s ({r['local_img_s']:.1f} images/s); "
                  f"Ray {r['ray_s']:.1f} s ({r['ray_img_s']:.1f} images/s) after {r['ray_start_s']:.1f} s "
                  "to start Ray", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
