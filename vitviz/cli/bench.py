"""`vitviz bench`: measure what the README's Performance section promises, side by side in one run.

    vitviz bench [--quick] [--json FILE] [--device cpu|cuda|auto] [--only GROUP,...]

Groups, in run order: capture (attention capture overhead; attention bytes), gui (click / switch /
rollout to paint), rollout (each rollout setting change vs the vit-explain script's recompute, and vs the float64 loop), startup (fresh processes to first
paint / first map), memory (peak RSS per model, one process each), soak, batch (many images:
analyze_many images/s at batch 1 / 8 / 32 against analyze() one at a time, RSS over a long run
with keep=stats). Opt-in, run only when named in --only: ray (vitviz stats on the Ray engine
against the local one; needs vitviz[ray], starts a local Ray). Every figure is a median over
repeated runs after warm-up, or a ratio of runs alternated in the same process, because absolute
times on a shared machine are noisy. On CUDA every timing synchronises the device first.

--json FILE writes a list of rows {metric, value, unit, goal, met, note}: value is a number or null
(not measured: the note says why), goal a string like "<= 1.05" in the row's unit or null, met true
/ false / null (no goal or no value). --quick (CI) uses few repeats and smaller inputs where a full
one is slow (DETR's input), produces every row, and asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from importlib import import_module

# group -> module with run(ctx) -> list[Row] and metrics() -> [(metric, unit, goal)]
GROUPS = {
    "capture": "vitviz.bench.capture",
    "gui": "vitviz.bench.gui",
    "rollout": "vitviz.bench.rollout",
    "relevance_detr": "vitviz.bench.relevance_detr",
    "faithfulness": "vitviz.bench.faithfulness",
    "startup": "vitviz.bench.startup",
    "memory": "vitviz.bench.memory",
    "soak": "vitviz.bench.soak",
    "batch": "vitviz.bench.batch",
    "analyses": "vitviz.bench.analyses",
}
# groups run only when --only names them (an optional extra, a cluster to start)
OPTIONAL_GROUPS = {
    "ray": "vitviz.bench.ray_engine",
}


def _module(group: str):
    return import_module({**GROUPS, **OPTIONAL_GROUPS}[group])


def expected_metrics(groups=GROUPS) -> list[str]:
    """Every row `vitviz bench` produces for these groups, in order."""
    return [m for g in groups for m, _, _ in _module(g).metrics()]


def run_group(group: str, ctx) -> list:
    from ..bench.metrics import missing

    module = _module(group)
    why = "failed: the group did not produce this row"
    try:
        rows = module.run(ctx)
    except Exception as exc:  # a broken group still yields its rows, each saying why
        traceback.print_exc()
        why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
        rows = []
    have = {r.metric for r in rows}
    rows += [missing(m, unit, goal, why) for m, unit, goal in module.metrics() if m not in have]
    order = {m: i for i, (m, _, _) in enumerate(module.metrics())}
    return sorted(rows, key=lambda r: order.get(r.metric, len(order)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vitviz bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--quick", action="store_true", help="CI mode: few repeats, every row, no timing claims")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--only", metavar="GROUPS", help="comma-separated subset of: " + ", ".join(GROUPS)
                        + "; or the opt-in " + ", ".join(OPTIONAL_GROUPS))
    args = parser.parse_args(argv)
    groups = list(GROUPS)
    if args.only:
        groups = [g.strip() for g in args.only.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUPS and g not in OPTIONAL_GROUPS]
        if unknown:
            parser.error(f"unknown group(s) {', '.join(unknown)}; choose from "
                         f"{', '.join([*GROUPS, *OPTIONAL_GROUPS])}")

    from ..bench.context import BenchContext, qt_platform
    from ..bench.metrics import format_table
    from ..core.models.loading import resolve_device

    if qt_platform():
        os.environ.setdefault("QT_QPA_PLATFORM", qt_platform())
    ctx = BenchContext(device=resolve_device(args.device), quick=args.quick)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t0 = time.perf_counter()
    rows = []
    try:
        for g in groups:
            print(f"[vitviz bench] {g}…", file=sys.stderr, flush=True)
            rows += run_group(g, ctx)
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)  # the test image, settings of the children
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"vitviz bench{' --quick' if args.quick else ''}: device {ctx.device}, {os.cpu_count()} CPUs, "
          f"load average {load0:.1f} at start / {load1:.1f} at end, {time.perf_counter() - t0:.0f} s")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.as_dict() for r in rows], f, indent=2)
            f.write("\n")
    return 0
