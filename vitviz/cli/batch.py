"""`vitviz stats`: per-image statistics over many images, on this machine or a Ray cluster.

    vitviz stats SOURCE... [--model NAME] [--weights ...] [--stats predictions,rollout] [--out DIR]
                 [--batch-size 16] [--device cpu|cuda|auto] [--force]
                 [--engine local|ray] [--address auto|ray://HOST:10001] [--actors N] [--gpus-per-actor G]

SOURCE: image files, folders (every image in them, recursively) or, with --engine ray, anything Ray
reads (s3://bucket/folder, gs://...). Results go to DIR/rows/*.json as each image is done, then
DIR/stats.json (per-image rows, failures, means). An interrupted run (Ctrl+C) resumes: a re-run
skips what is done unless --force. Exit code 0, 1 if any image failed, 130 if interrupted.
"""
from __future__ import annotations

import argparse
import sys

from .folder_tables import table_parser


def build_parser() -> argparse.ArgumentParser:
    p = table_parser("vitviz stats", __doc__, "image files, folders, or (Ray) remote URIs")
    p.add_argument("--stats", default="",
                   help="comma-separated statistics (default: all that apply to the model's family): "
                        + ", ".join(_reducer_names()))
    p.add_argument("--out", "-o", default="vitviz-stats", help="output folder (default ./vitviz-stats)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward (default 16)")
    p.add_argument("--workers", type=int, help="local engine: decoding processes (default: cores - 1)")
    p.add_argument("--attention-dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--force", action="store_true", help="analyse everything again, replacing DIR's results")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="ray: the cluster to join (auto, ray://HOST:10001); default a local Ray")
    p.add_argument("--num-cpus", type=int, help="ray: CPUs of the local Ray it starts")
    p.add_argument("--actors", type=int, default=1, help="ray: model copies at once (default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs per actor (e.g. 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _reducer_names() -> list[str]:
    from ..core.analysis import stats_reducers  # noqa: F401  (the analyses, named with --stats)
    from ..core.batch.reducers import reducers

    return [r.name for r in reducers()]


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..core.analysis import stats_reducers  # noqa: F401  (attention_distance... on request)
    from ..core.batch.folder import Job, RunFolderError
    from ..core.batch.reducers import get_reducer
    from ..core.batch.run import run_stats
    from ..core.engines import get_engine

    stats = tuple(s.strip() for s in args.stats.split(",") if s.strip())
    try:
        for s in stats:
            get_reducer(s)
    except ValueError as exc:
        parser.error(str(exc))
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.model:  # before any engine starts (a Ray actor would fail with a long traceback)
        from ..core.models.registry import get_spec

        try:
            get_spec(args.model)
        except (KeyError, LookupError) as exc:
            print(f"vitviz stats: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 2
    if args.engine == "local":
        if args.address or args.num_cpus or args.gpus_per_actor or args.actors != 1:
            parser.error("--address, --num-cpus, --actors and --gpus-per-actor are for --engine ray")
        engine = get_engine("local", workers=args.workers)
    else:
        from ..core.engines.ray import INSTALL_HINT

        try:
            from ..core.engines.ray import import_ray

            import_ray()
        except RuntimeError:
            print(f"vitviz stats: {INSTALL_HINT}", file=sys.stderr)
            return 2
        engine = get_engine("ray", address=args.address, num_cpus=args.num_cpus, actors=args.actors,
                            num_gpus=args.gpus_per_actor)
    job = Job(model=args.model, weights=args.weights, stats=stats, batch_size=args.batch_size,
              device=args.device, attention_dtype=args.attention_dtype)
    try:
        summary = run_stats(args.sources, args.out, job, engine, force=args.force,
                            progress=None if args.quiet else True)
    except RunFolderError as exc:
        print(f"vitviz stats: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, RuntimeError) as exc:  # unknown model, bad checkpoint, device...
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"vitviz stats: {msg}", file=sys.stderr)
        return 2
    for f in summary.failed:
        print(f"skipped {f['source']}: {f['error']}", file=sys.stderr)
    if summary.cancelled:
        print(f"vitviz stats: interrupted after {summary.analysed} image(s) in this run; the results so far "
              f"are in {summary.out / 'rows'}; run the same command again to resume.", file=sys.stderr)
        return 130
    _print_summary(summary)
    return 1 if summary.failed else 0


def _print_summary(summary) -> None:
    s = summary.stats or {}
    print(f"{s.get('images', 0)} image(s) analysed ({summary.analysed - len(summary.failed)} in this run, "
          f"{summary.skipped} by an earlier one), {len(summary.failed)} failed -> {summary.out / 'stats.json'}")
    for reducer, fields in (s.get("means") or {}).items():
        scalars = {k: v for k, v in fields.items() if isinstance(v, float)}
        if scalars:
            print(f"  {reducer}: " + ", ".join(f"mean {k} {v:.4g}" for k, v in scalars.items()))
    for reducer, fields in (s.get("counts") or {}).items():
        for field, counts in fields.items():
            top = ", ".join(f"{k} ({n})" for k, n in list(counts.items())[:5])
            print(f"  {reducer}: {field}: {top}")
