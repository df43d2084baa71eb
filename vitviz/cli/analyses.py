"""`vitviz analyses`: the ViT paper's and DINO's analyses of one image, or their mean over a folder.

    vitviz analyses IMAGE_OR_FOLDER... [--model NAME] [--weights ...] [--device cpu]
                    [--analyses attention_distance,attention_entropy] [--param NAME.KEY=VALUE]
                    [--out table.json|table.csv]

Analyses (vitviz.core.analysis.tables): attention_distance (pixels of the model input),
attention_entropy (nats), position_similarity, patch_filters, dino_masks, token_norms.
The JSON holds the model, the sha256 of its weights (vitviz.core.models.digest: the same for the
same weights, whatever file they came from), the settings, every analysis's mean over the images
and, for the (layer, head) tables, each image's values. A .csv out holds the (layer, head) tables in long form:
one row per image, layer and head, then the mean rows (source "mean").
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from .folder_tables import images_or_none, names_arg, run_and_write, table_parser

DEFAULT = "attention_distance,attention_entropy"


def build_parser() -> argparse.ArgumentParser:
    p = table_parser("vitviz analyses", __doc__, "image files or folders (every image in them, recursively)")
    p.add_argument("--analyses", default=DEFAULT, help=f"comma-separated analyses (default {DEFAULT})")
    p.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="an analysis's parameter, e.g. dino_masks.threshold=0.6 (repeatable)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default 8)")
    p.add_argument("--out", "-o", default="analyses.json", help="a .json or .csv file (default analyses.json)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = names_arg(parser, args.analyses, "--analyses", "analysis")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    from ..core.analysis.tables import get_measure
    from .faithfulness import parse_params

    try:
        decl = [get_measure(n) for n in names]
        params = parse_params(args.param, names)
        for m in decl:
            m.resolve(params.get(m.name))
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    if out.suffix.lower() == ".csv" and not any(m.per_layer_head for m in decl):
        parser.error("a .csv holds (layer, head) tables: add attention_distance or attention_entropy, "
                     "or write .json")
    images = images_or_none("vitviz analyses", args.sources)
    if images is None:
        return 2
    return run_and_write("vitviz analyses", out, lambda: run(images, args, names, params), write_csv,
                         _print_summary)


def run(images: list[str], args, names: list[str], params: dict) -> dict:
    from ..core.analysis.over_images import measure_many
    from ..core.analysis.tables import get_measure
    from ..core.api import model_for
    from ..core.json_values import jsonable

    loaded = model_for(args.model, args.weights, args.device, None)
    res = measure_many(images, names, loaded, params=params, device=args.device,
                       batch_size=args.batch_size, progress=not args.quiet)
    if not res.sources:
        raise ValueError("no image could be read: " + "; ".join(f"{s}: {e}" for s, e in res.failures))
    analyses = {}
    for n in names:
        m = get_measure(n)
        analyses[n] = {"title": m.title, "axes": list(m.axes), "unit": m.unit,
                       "definition": m.description, "mean": jsonable(res.means[n])}
    rows = [{"source": s, **{n: jsonable(v[i]) for n, v in res.per_image.items()}}
            for i, s in enumerate(res.sources)]
    from ..core.models.digest import weights_sha256

    return {"model": loaded.name, "weights": loaded.weights_label, "trained": loaded.trained,
            "weights_sha256": weights_sha256(loaded.module),
            "settings": {"analyses": names, "params": res.params, "images": len(res.sources)},
            "analyses": analyses, "images": rows,
            "failed": [{"source": s, "error": e} for s, e in res.failures]}


def write_csv(path: Path, table: dict) -> None:
    tables = [n for n, a in table["analyses"].items() if a["axes"] == ["layer", "head"]]
    head = ["source", "model", "weights", "layer", "head", *tables]
    base = {"model": table["model"], "weights": table["weights"]}
    sets = [(r["source"], {n: r[n] for n in tables}) for r in table["images"]]
    sets.append(("mean", {n: table["analyses"][n]["mean"] for n in tables}))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, head)
        w.writeheader()
        for source, vals in sets:
            first = vals[tables[0]]
            for layer in range(len(first)):
                for h in range(len(first[layer])):
                    w.writerow({"source": source, **base, "layer": layer, "head": h,
                                **{n: vals[n][layer][h] for n in tables}})


def _print_summary(table: dict, out: Path) -> None:
    print(f"{len(table['images'])} image(s), {table['model']} ({table['weights']}) -> {out}")
    for n, a in table["analyses"].items():
        if a["axes"] == ["layer", "head"]:
            per_layer = ", ".join(f"{sum(r) / len(r):.3g}" for r in a["mean"])
            print(f"  {n} ({a['unit']}), mean over heads per layer: {per_layer}")
        else:
            print(f"  {n}: {' x '.join(a['axes'])}")
