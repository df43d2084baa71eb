"""`vitviz faithfulness`: how faithful each method's maps are, over a folder of images.

    vitviz faithfulness SOURCE... [--model NAME] [--weights ...] [--methods rollout,relevance,random]
                        [--steps 50] [--param METHOD.KEY=VALUE] [--seed 0] [--out table.json|table.csv]

Per image and method: deletion and insertion AUC (Petsiuk et al. 2018, `steps` equal steps) and
positive / negative perturbation AUC (Chefer et al. 2021, 10%..90% removed) for the top-1 class of the
untouched image; per method: their means with standard errors over the images and the perturbation
top-1 accuracy per share (definitions: vitviz.core.faithfulness). `random` is the seeded baseline.
The JSON holds the model, the settings, the per-method summary and every image's values and curves;
a .csv out holds one row per image and method, then a mean and a standard-error row per method.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ..core.faithfulness.report import AUCS
from .folder_tables import images_or_none, names_arg, run_and_write, table_parser


def build_parser() -> argparse.ArgumentParser:
    p = table_parser("vitviz faithfulness", __doc__, "image files or folders (every image in them, recursively)")
    p.add_argument("--methods", default="rollout,relevance,random",
                   help="comma-separated methods, `random` for the baseline (default rollout,relevance,random)")
    p.add_argument("--steps", type=int, default=50, help="deletion / insertion steps (default 50)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method's parameter, e.g. rollout.discard_ratio=0.9 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="the random baseline's seed (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="perturbed images per forward (default 16)")
    p.add_argument("--out", "-o", default="faithfulness.json", help="a .json or .csv file (default faithfulness.json)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def parse_params(texts: list[str], methods: list[str]) -> dict:
    from ..core.methods import parse_param

    out: dict = {}
    for text in texts:
        key, value = parse_param(text)
        method, dot, name = key.partition(".")
        if not dot or method not in methods:
            raise ValueError(f"--param wants METHOD.KEY=VALUE for one of {', '.join(methods)}, not {text!r}")
        out.setdefault(method, {})[name] = value
    return out


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    methods = names_arg(parser, args.methods, "--methods", "method")
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    try:
        params = parse_params(args.param, methods)
    except ValueError as exc:
        parser.error(str(exc))
    images = images_or_none("vitviz faithfulness", args.sources)
    if images is None:
        return 2
    return run_and_write("vitviz faithfulness", Path(args.out), lambda: run(images, args, methods, params),
                         write_csv, _print_summary)


def run(images: list[str], args, methods: list[str], params: dict) -> dict:
    from tqdm.auto import tqdm

    from ..core.api import model_for
    from ..core.batch import analyze_many
    from ..core.faithfulness.curves import blur_sigma
    from ..core.faithfulness.perturb import FRACTIONS
    from ..core.faithfulness.report import check_methods, image_row, summarise

    loaded = model_for(args.model, args.weights, args.device, None)
    check_methods(loaded.spec.family, methods)
    from ..core.batch import ImageFailure

    rows, failed, size = [], [], None
    bar = tqdm(total=len(images) * len(methods), desc="faithfulness", unit="map", disable=args.quiet,
               dynamic_ncols=True)
    try:
        for result, source in zip(analyze_many(images, loaded, batch_size=8, on_error="yield"), images):
            if isinstance(result, ImageFailure):
                failed.append({"source": source, "error": result.error})
                bar.update(len(methods))
                continue
            size = size or tuple(int(v) for v in result.model_input.shape[-2:])
            row = image_row(result, methods, args.steps, params, args.seed, args.batch_size,
                            on_method=lambda m: bar.update(1))
            rows.append({"source": source, **row})
    finally:
        bar.close()
    if not rows:
        raise ValueError("no image could be read: " + "; ".join(f"{f['source']}: {f['error']}" for f in failed))
    h, w = size
    return {"model": loaded.name, "weights": loaded.weights_label, "trained": loaded.trained,
            "settings": {"methods": methods, "params": params, "steps": args.steps, "seed": args.seed,
                         "batch_size": args.batch_size, "target": "top-1 of the untouched image",
                         "input_size": [int(h), int(w)], "blur_sigma": list(blur_sigma((h, w))),
                         "perturbation_fractions": list(FRACTIONS), "replacement": "per-channel mean"},
            "summary": summarise(rows, methods), "images": rows, "failed": failed}


def write_csv(path: Path, table: dict) -> None:
    head = ["row", "method", "model", "weights", "steps", "target", "target_name", *AUCS]
    base = {"model": table["model"], "weights": table["weights"], "steps": table["settings"]["steps"]}
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, head)
        w.writeheader()
        for r in table["images"]:
            for m, v in r["methods"].items():
                w.writerow({"row": r["source"], "method": m, "target": r["target"], "target_name": r["target_name"],
                            **base, **{k: v[k] for k in AUCS}})
        for m, s in table["summary"].items():
            for stat in ("mean", "se"):
                w.writerow({"row": stat, "method": m, **base, **{k: s[k][stat] for k in AUCS}})


def _print_summary(table: dict, out: Path) -> None:
    print(f"{len(table['images'])} image(s), {table['model']} ({table['weights']}) -> {out}")
    for m, s in table["summary"].items():
        parts = []
        for k in AUCS:
            se = s[k]["se"]
            parts.append(f"{k} {s[k]['mean']:.3f}" + (f" ± {se:.3f}" if se is not None else ""))
        print(f"  {m}: " + ", ".join(parts))
