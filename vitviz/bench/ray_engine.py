"""Row group `ray` (opt-in: `vitviz bench --only ray`; needs `pip install 'vitviz[ray]'`): `vitviz
stats`'s folder run on the Ray Data engine against the local engine, on the same folder of PNGs and
the same job, in this process. Ray is started (a local Ray, this machine's CPUs) before its run and
timed apart; the local engine decodes in DataLoader workers, Ray in its own read tasks.

It is not in the default run: it starts a Ray cluster (about 10 s and a few hundred MB here) and
needs an optional extra. What Ray buys is not speed on one machine but the same command on a
cluster: many actors and GPUs, images read from object storage, rows streamed to one stats.json.
"""
from __future__ import annotations

import os

from .batch import DEMO, ray_vs_local
from .metrics import Row, missing

LOCAL = f"Many images, {DEMO[0]}: images/s, vitviz stats local engine (PNG folder)"
RAY = f"Many images, {DEMO[0]}: images/s, vitviz stats Ray engine (local Ray, 1 actor)"
RATIO = f"Many images, {DEMO[0]}: Ray engine / local engine images/s"
START = "Many images: Ray start-up (ray.init, local)"


def metrics() -> list[tuple[str, str, str | None]]:
    return [(LOCAL, "img/s", None), (RAY, "img/s", None), (RATIO, "x", None), (START, "s", None)]


def run(ctx) -> list[Row]:
    from ..core.engines.ray import INSTALL_HINT, import_ray

    try:
        import_ray()
    except RuntimeError:
        return [missing(m, u, g, f"not available: {INSTALL_HINT}") for m, u, g in metrics()]
    n = 32 if ctx.quick else 256
    cpus = os.cpu_count() or 2
    r = ray_vs_local(DEMO[1], DEMO[2], n, batch_size=16, num_cpus=cpus)
    how = f"{n} 320x240 PNGs, {DEMO[1]}, batch 16, statistics predictions + rollout, {ctx.device}"
    return [
        Row(LOCAL, r["local_img_s"], "img/s", note=f"{how}: {r['local_s']:.1f} s"),
        Row(RAY, r["ray_img_s"], "img/s", note=(
            f"{how}: {r['ray_s']:.1f} s after Ray had started (ray.init(num_cpus={cpus})), actor start-up "
            "(imports, model load) included")),
        Row(RATIO, r["ray_img_s"] / r["local_img_s"], "x", note=(
            "the same rows (to float rounding) either way; on one machine Ray costs its scheduling and an "
            "actor process; what it buys is the cluster: more actors, GPUs, s3:// and gs:// sources")),
        Row(START, r["ray_start_s"], "s", note=f"a local Ray with {cpus} CPUs, no dashboard"),
    ]
