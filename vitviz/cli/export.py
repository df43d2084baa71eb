"""`vitviz export`: figures without the window: the family table builds the figure from (analysis,
view state) in core, the GUI's renderer draws it with QtGui only (no widgets), and the one analysis
entry point, vitviz.core.api.analyze, runs the model.

    vitviz export IMAGE|FOLDER [...] --model NAME --view attention --format png --out DIR_OR_FILE
    vitviz export --from-sidecar FIGURE.png.json [--out FILE_OR_DIR]

Many images run through vitviz.core.batch.analyze_many (batched forwards, decoding in DataLoader
workers) with a tqdm progress bar; each figure and its sidecar are written atomically, so an
interrupted run (Ctrl+C) leaves no partial file, and running the same command again skips every
image whose figure and sidecar are there, intact and made by the same export (same image bytes,
model, weights and options); --force exports everything again. A bad image is reported and
skipped, the others exported; the exit code is 1 if anything failed, 130 if interrupted (2 for a
wrong command line).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FORMATS = ("png", "svg", "pdf")


def build_parser() -> argparse.ArgumentParser:
    from ..core.colormaps import COLORMAPS, DEFAULT_COLORMAP, OVERLAYS

    p = argparse.ArgumentParser(
        prog="vitviz export",
        description="Export attention figures (PNG, SVG, PDF) with a JSON sidecar, without the window.")
    p.add_argument("images", nargs="*", help="image files, or folders (every image in them)")
    p.add_argument("--model", help="model name (see `vitviz models`; default demo_vit)")
    p.add_argument("--weights", default="pretrained", help="pretrained, random, or a checkpoint file")
    p.add_argument("--device", help="cpu (default), cuda, mps or auto")
    p.add_argument("--download", action="store_true",
                   help="fetch missing pretrained weights first (progress on stderr)")
    p.add_argument("--view", default=None,
                   help="attention, method, rollout, grid, windows (Swin), detections (DETR), head:N; "
                        "several, comma-separated, side by side on one colour scale (default: attention, "
                        "or method when --method is given)")
    p.add_argument("--layer", type=int, default=-1, help="layer (negative counts from the end; default last)")
    p.add_argument("--head", default="mean", help="head index, or mean|max|min over heads (default mean)")
    p.add_argument("--query", default="cls",
                   help="ROW,COL of a patch (DETR: an encoder cell), or cls (default); DETR: N = the "
                        "N-th detection (0 = best), qN = object query N")
    p.add_argument("--threshold", type=float, help="DETR: show detections scoring above this (default 0.7)")
    p.add_argument("--direction", choices=("from", "to"), default="from",
                   help="attention from the query (where it looks) or to it")
    p.add_argument("--method", help="the map beside the attention (`vitviz methods` lists them; default "
                                    "rollout); its view is 'method' (or its own name for rollout)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of --method, e.g. --param discard_ratio=0.9 (repeatable)")
    p.add_argument("--fusion", choices=("mean", "max", "min"), help="rollout head fusion (= --param head_fusion=)")
    p.add_argument("--discard", type=float, help="rollout discard ratio (= --param discard_ratio=)")
    p.add_argument("--colormap", choices=COLORMAPS, default=DEFAULT_COLORMAP)
    p.add_argument("--opacity", type=float, default=0.6, help="heatmap opacity 0..1 (default 0.6)")
    p.add_argument("--overlay", choices=OVERLAYS, default="blend",
                   help="blend: the colormap's colours at the opacity; alpha: one colour whose opacity is the value")
    p.add_argument("--no-grid", action="store_true", help="no token grid lines")
    p.add_argument("--format", choices=FORMATS, help="default: from --out's extension, else png")
    p.add_argument("--out", "-o", help="output folder (created if missing), or a file for one image")
    p.add_argument("--width", type=int, help="PNG width in pixels")
    p.add_argument("--dpi", type=float, default=192.0, help="PNG resolution when no --width (default 192)")
    p.add_argument("--aspect", choices=("auto", "16:9"), default="auto", help="16:9 pads to a slide's shape")
    p.add_argument("--theme", choices=("light", "dark"), default="light")
    p.add_argument("--layers", help="grid: layers (rows) to include, e.g. 0-3,11")
    p.add_argument("--heads", help="grid: heads (columns) to include, e.g. 0,2,5")
    p.add_argument("--tile-scale", choices=("tile", "shared"), default="tile",
                   help="grid: each tile on its own min..max (default), or one shared scale")
    p.add_argument("--no-title", action="store_true")
    p.add_argument("--no-caption", action="store_true")
    p.add_argument("--no-colorbar", action="store_true")
    p.add_argument("--from-sidecar", metavar="FILE.json", help="re-run the export a sidecar describes")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per forward (default 16); 1 reproduces one-image exports byte for byte "
                        "(batched matrix products round differently in the last float bits)")
    p.add_argument("--workers", type=int, help="decoding processes (default: cores - 1, at most 4)")
    p.add_argument("--force", action="store_true",
                   help="export every image again (default: skip figures an earlier run completed)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _indices(spec: str | None, what: str) -> list[int] | None:
    if not spec:
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise SystemExit(f"vitviz export: error: --{what} wants numbers and ranges like 0-3,7, not {spec!r}")
    return out


def _query(text: str):
    t = text.strip().lower()
    if t == "cls":
        return "cls"
    if t.isdigit() or (t[:1] == "q" and t[1:].isdigit()):  # DETR: a detection, or an object query
        return int(t) if t.isdigit() else t
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"vitviz export: error: --query wants ROW,COL, cls, N or qN, not {text!r}")
    return [row, col]


def collect_images(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files as given, folders expanded to their images (sorted); missing inputs as failures."""
    files, missing = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [str(f) for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
        elif p.exists():
            files.append(str(p))
        else:
            missing.append((item, "no such file or folder"))
    return files, missing


def ensure_qt(widgets: bool = False):
    """A Qt application on the offscreen platform (unless a platform was chosen explicitly). The
    renderer needs fonts and QPainter, not widgets: where PySide6.QtWidgets is missing a
    QGuiApplication does; otherwise a QApplication, so widgets made later in the process still work."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtGui

    app = QtGui.QGuiApplication.instance()
    if app is None:
        try:
            from PySide6 import QtWidgets
        except ImportError:
            if widgets:
                raise
            return QtGui.QGuiApplication(["vitviz-export"])
        app = QtWidgets.QApplication(["vitviz-export"])
    return app


class FamilyFigures:
    """Builds a family's figure headless: (analysis, state from the settings) -> ExportSources."""

    def __init__(self, family: str):
        from ..core.families import get_family

        self.family = get_family(family)
        self.state_type = self.family.state_type()

    def sources(self, analysis, settings: dict):
        return self.family.build_figures(analysis, self.state_type.from_json(settings))


def make_panel(family: str) -> FamilyFigures:
    return FamilyFigures(family)


class Progress:
    """A tqdm bar over the images on stderr ("[done/total]", rate, ETA); messages and the written
    files' names are printed above it (stderr / stdout) without breaking it."""

    FORMAT = "{desc} [{n_fmt}/{total_fmt}] {percentage:3.0f}%|{bar}| {elapsed}<{remaining}, {rate_fmt}"

    def __init__(self, total: int, done: int = 0, desc: str = "export", quiet: bool = False, stream=None):
        from tqdm.auto import tqdm

        self.stream = stream or sys.stderr
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="img", file=self.stream,
                        bar_format=self.FORMAT, dynamic_ncols=True, disable=quiet)

    def step(self, text: str = "") -> None:
        self.bar.update(1)

    def message(self, text: str, stdout: bool = False) -> None:
        self.bar.write(text, file=sys.stdout if stdout else self.stream)

    def close(self) -> None:
        self.bar.close()


def _settings(args) -> dict:
    head = args.head if not str(args.head).lstrip("-").isdigit() else int(args.head)
    s = {"layer": args.layer, "head": head, "query": _query(args.query), "direction": args.direction,
         "colormap": args.colormap, "opacity": args.opacity, "overlay": args.overlay,
         "grid": not args.no_grid}
    from ..core.methods import get_method, parse_param

    params = {}
    if args.fusion is not None:
        params["head_fusion"] = args.fusion
    if args.discard is not None:
        params["discard_ratio"] = args.discard
    try:
        params.update(parse_param(p) for p in args.param)
        if args.method or params:
            method = get_method(args.method or "rollout")
            s["method"], s["method_params"] = method.name, method.resolve(params)
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"vitviz export: error: {_message(exc)}") from None
    if args.threshold is not None:
        s["threshold"] = args.threshold
    return s


def _request(args, fmt: str):
    from ..gui.export import ExportRequest

    if args.width is not None and not 16 <= args.width <= 30000:
        raise SystemExit("vitviz export: error: --width must be between 16 and 30000 pixels")
    if not 0.0 <= args.opacity <= 1.0:
        raise SystemExit("vitviz export: error: --opacity must be between 0 and 1")
    return ExportRequest(
        views=[v.strip() for v in (args.view or ("method" if args.method else "attention")).split(",")
               if v.strip()], format=fmt, width=args.width,
        dpi=args.dpi, aspect=args.aspect, theme=args.theme, title=not args.no_title,
        colorbar=not args.no_colorbar, caption=not args.no_caption,
        rows=_indices(args.layers, "layers"), cols=_indices(args.heads, "heads"),
        tile_scale=args.tile_scale, settings=_settings(args))


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def export_key(request, loaded, weights: str) -> str:
    """What makes two exports of one image the same figure, besides the image and the weights file
    (which the sidecar records): the request as asked (settings before they are resolved against
    the image), the model, the weights asked for and those that ran. Recorded in the sidecar."""
    import hashlib

    from ..core.json_values import jsonable

    ident = {"request": request.to_json(), "model": loaded.name, "weights": str(weights),
             "weights_used": loaded.weights_label, "trained": bool(loaded.trained)}
    return hashlib.sha256(json.dumps(jsonable(ident), sort_keys=True).encode()).hexdigest()


def is_complete(target: str, image_path: str, key: str) -> bool:
    """An earlier run's figure can stand: the figure and its sidecar are both there, the figure's
    bytes are the ones the sidecar records, and it was made from this image's current bytes by an
    export with this key (and, for a weights file, the same file's bytes)."""
    from ..gui.export import file_sha256, sidecar_path

    try:
        with open(sidecar_path(target), encoding="utf-8") as f:
            side = json.load(f)
        out, image, model = side["output"], side["image"], side["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if side.get("export_key") != key or out.get("file") != os.path.basename(target):
        return False
    if not out.get("sha256") or file_sha256(target) != out["sha256"]:
        return False  # missing, or not the file the sidecar describes (an interrupted replace)
    if image.get("path") != os.path.abspath(image_path) or image.get("sha256") != file_sha256(image_path):
        return False
    wfile = model.get("weights_file")
    return not wfile or file_sha256(wfile) == model.get("weights_sha256")


def export_analysis(figures: FamilyFigures, analysis, image_path: str, request, target: str, weights: str,
                    key: str | None = None):
    """Write one analysis's figure and sidecar (atomically, both or neither)."""
    from ..gui.export import ExportContext, export_sources_to_file

    ensure_qt()
    ctx = ExportContext.from_analysis(analysis, image_path=image_path, weights=weights,
                                      image_name=os.path.basename(image_path))
    return export_sources_to_file(figures.sources(analysis, request.settings), dataclasses.replace(request),
                                  ctx, target, extra={"export_key": key} if key else None)


def export_one(figures: FamilyFigures, loaded, image_path: str, request, target: str, weights: str):
    """Analyse one image (vitviz.core.api.analyze) and write its figure and sidecar."""
    from ..core.api import analyze

    return export_analysis(figures, analyze(image_path, model=loaded), image_path, request, target, weights,
                           export_key(request, loaded, weights))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.from_sidecar:
        return rerun(args)
    if not args.images:
        parser.error("give at least one image or folder (or --from-sidecar FILE.json)")
    out = args.out or "."
    suffix = Path(out).suffix.lower().lstrip(".")
    fmt = args.format or (suffix if suffix in FORMATS else "png")
    files, failures = collect_images(args.images)
    to_file = suffix in FORMATS and not Path(out).is_dir()
    if to_file and len(files) + len(failures) > 1:
        parser.error(f"--out {out} names a file, but several images were given: name a folder")
    request = _request(args, fmt)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not files:
        for item, why in failures:
            print(f"vitviz export: {item}: {why}", file=sys.stderr)
        print("vitviz export: no images to export", file=sys.stderr)
        return 1
    folder = os.path.dirname(os.path.abspath(out)) if to_file else out
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        print(f"vitviz export: cannot create the output folder {folder}: {exc.strerror}", file=sys.stderr)
        return 1
    return _run(args, files, failures, request, out, to_file)


def plan_targets(files: list[str], request, out: str, to_file: bool) -> list[tuple[str, str]]:
    """(image, figure file) for every image: DIR/<stem>_<views>.<format>, -2, -3... for repeated
    stems (in the order given, so a re-run names every image the same)."""
    if to_file:
        return [(files[0], out)]
    slug = "+".join(v.replace(":", "") for v in request.views)
    used: set[str] = set()
    plan = []
    for path in files:
        stem = f"{Path(path).stem}_{slug}"
        candidate, n = stem, 1
        while candidate in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate)
        plan.append((path, os.path.join(out, f"{candidate}.{request.format}")))
    return plan


def _run(args, files, failures, request, out, to_file) -> int:
    from contextlib import closing

    from ..core.api import DEFAULT_MODEL, get_model
    from ..core.batch import ImageFailure, analyze_many
    from ..core.models.errors import RandomWeightsWarning
    from ..gui.export import ExportError

    missing = len(failures)  # inputs that did not exist
    model = args.model or DEFAULT_MODEL
    if getattr(args, "download", False) and args.weights == "pretrained":
        from ..__main__ import fetch_weights

        if fetch_weights(model):
            return 1
    try:
        with warnings.catch_warnings():  # said below as a note, with the CLI's own remedy
            warnings.simplefilter("ignore", RandomWeightsWarning)
            loaded = get_model(model, args.weights, args.device or "cpu")
        panel = make_panel(loaded.spec.family)
    except (ExportError, KeyError, ValueError, OSError) as exc:
        print(f"vitviz export: {_message(exc)}", file=sys.stderr)
        return 1
    query = request.settings.get("query")
    if loaded.spec.family != "detr" and query != "cls" and not isinstance(query, list):
        print(f"vitviz export: --query {args.query} (a detection or object query) is for DETR models; "
              "give ROW,COL or cls", file=sys.stderr)
        return 2
    key = export_key(request, loaded, args.weights)
    plan = plan_targets(files, request, out, to_file)
    todo = [(p, t) for p, t in plan if args.force or not is_complete(t, p, key)]
    progress = Progress(len(files), len(plan) - len(todo), desc=loaded.name, quiet=args.quiet)
    for note in loaded.notes:
        progress.message(f"note: {note}")
    if loaded.weights_missing:
        progress.message("note: run again with --download to fetch the pretrained weights first.")
    if len(todo) < len(plan):
        progress.message(f"{len(plan) - len(todo)} image(s) exported by an earlier run of this export: "
                         "skipped (--force exports them again)")
    exported = attempted = 0
    results = analyze_many([p for p, _ in todo], model=loaded, batch_size=args.batch_size,
                           workers=args.workers, on_error="yield")
    try:
        with closing(results):
            for (path, target), result in zip(todo, results):
                attempted += 1
                try:
                    if isinstance(result, ImageFailure):
                        failures.append((path, result.reason or result.error))
                        progress.message(f"skipped {path}: {result.reason or result.error}")
                        continue
                    export_analysis(panel, result, path, request, target, args.weights, key)
                    exported += 1
                    progress.message(target, stdout=True)
                except ExportError as exc:  # the same would happen for every image: stop here
                    progress.message(f"vitviz export: {exc}")
                    failures.append((path, str(exc)))
                    break
                except Exception as exc:  # one image's figure failed: report it, keep going
                    failures.append((path, f"{type(exc).__name__}: {exc}"))
                    progress.message(f"failed {path}: {type(exc).__name__}: {exc}")
                finally:
                    progress.step()
                    del result  # one batch of analyses alive at a time, not the folder's
    except KeyboardInterrupt:
        progress.close()
        print(f"vitviz export: interrupted after {exported} figure(s) in this run; no partial file is left; "
              "run the same command again to export the rest.", file=sys.stderr)
        return 130
    except Exception as exc:  # a batched forward failed: the images it held, and those after, are not done
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        progress.message(f"vitviz export: the analysis stopped: {why}")
        failures += [(p, f"not analysed ({why})") for p, _ in todo[attempted:]]
    progress.close()
    where = out if not to_file else os.path.dirname(os.path.abspath(out))
    summary = f"Exported {exported} of {len(files) + missing} image(s) to {where}"
    if len(todo) < len(plan):
        summary += f" ({len(plan) - len(todo)} done by an earlier run)"
    if failures:
        summary += f"; {len(failures)} failed: " + "; ".join(f"{os.path.basename(p)} ({why})" for p, why in failures)
    print(summary, file=sys.stderr)
    return 1 if failures else 0


def rerun(args) -> int:
    """Re-run the export a sidecar describes: same image, model, weights, view settings, figure."""
    from ..core.api import get_model
    from ..gui.export import ExportError, ExportRequest, file_sha256, format_for

    try:
        with open(args.from_sidecar, encoding="utf-8") as f:
            meta = json.load(f)
        request = ExportRequest.from_json(meta["request"])
        image, model = meta["image"]["path"], meta["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"vitviz export: cannot read sidecar {args.from_sidecar}: {exc}", file=sys.stderr)
        return 1
    if not image or not os.path.isfile(image):
        print(f"vitviz export: the image this sidecar names is not available ({image or 'pasted image'})",
              file=sys.stderr)
        return 1
    if meta["image"].get("sha256") and file_sha256(image) != meta["image"]["sha256"]:
        print(f"vitviz export: warning: {image} has changed since the export (sha256 differs)", file=sys.stderr)
    wsha = model.get("weights_sha256")
    if wsha and model.get("weights_file") and file_sha256(model["weights_file"]) != wsha:
        print("vitviz export: warning: the weights file has changed since the export", file=sys.stderr)
    original = meta.get("output", {}).get("file") or f"figure.{request.format}"
    side_dir = os.path.dirname(os.path.abspath(args.from_sidecar))
    if args.out and os.path.isdir(args.out):
        target = os.path.join(args.out, original)
    elif args.out:
        target = args.out
    else:
        stem, ext = os.path.splitext(original)
        target = os.path.join(side_dir, f"{stem}-rerun{ext}")
    request.format = format_for(target, args.format or request.format)
    if args.format and not Path(target).suffix:
        target += "." + args.format
    try:
        loaded = get_model(model["name"], model["weights"], args.device or model.get("device") or "cpu")
        panel = make_panel(loaded.spec.family)
        result = export_one(panel, loaded, image, request, target, model["weights"])
    except (ExportError, KeyError, ValueError, OSError) as exc:
        print(f"vitviz export: {_message(exc)}", file=sys.stderr)
        return 1
    print(result.path)
    old_sha = meta.get("output", {}).get("sha256")
    if old_sha and request.format == "png":
        same = result.metadata["output"]["sha256"] == old_sha
        print(f"vitviz export: {'identical to' if same else 'differs from'} the original {original}"
              + ("" if same else " (a figure from a batched folder export can differ in the last float bits "
                                 "of the attention; exports with --batch-size 1 are reproduced exactly)"),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
