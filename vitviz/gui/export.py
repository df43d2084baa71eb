"""Figures for slides: what a panel hands over for export, and writing figures out safely.

A panel (ViT, Swin, DETR) describes what it can export with one method:

    panel.export_sources(settings: dict | None = None) -> ExportSources

`settings` overrides the panel's view_settings(): None means "what is on screen now". The CLI
passes layer, head (int or "mean"/"max"/"min"), query ("cls" or [row, col]), direction,
rollout_fusion, discard_ratio, colormap, opacity and grid; a panel uses the keys that apply to it,
ignores the others, and raises ExportError (a message for the user) for a value out of range.
ExportSources.settings must hold the resolved, JSON-able settings: sidecars record them, and
export_sources(those settings) must give the same figure again (`vitviz export --from-sidecar`).

ExportSources.views maps a view name ("attention", "rollout", "grid", "windows", "detections",
"head:3", ...) to a MapView (the image, a heatmap and vector Shapes, all in original-image pixels)
or a TileGrid (rows x cols of small maps). The figure layouts and the PNG/SVG/PDF rendering live
in export_figures.py; this module holds the data types, the request, the provenance record and
the atomic writes.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

FORMATS = ("png", "svg", "pdf")
Color = tuple  # (r, g, b, a) 0-255

GRID_COLOR: Color = (255, 255, 255, 90)  # as the image views draw them
SELECTION_COLOR: Color = (255, 59, 48, 255)
SHADE_COLOR: Color = (0, 0, 0, 150)


class ExportError(Exception):
    """An export failed; the message names the file and the reason."""


# -- what a panel supplies -----------------------------------------------------------------------
@dataclass
class Shape:
    """A vector mark over a MapView, in original-image pixels.

    kind "lines": coords (n, 4) segments x0, y0, x1, y1. kind "rect": coords (x0, y0, x1, y1),
    outlined with `color` (and filled with `fill` if given), `label` written at its top-left corner.
    kind "shade": coords = the rectangle the model saw; everything else in the image is darkened."""

    kind: str
    coords: object
    color: Color = (255, 255, 255, 255)
    width: float = 1.0  # in figure units (1/96 inch), whatever the zoom
    label: str = ""
    fill: Color | None = None
    dashed: bool = False


def grid_lines(xs: np.ndarray, ys: np.ndarray, color: Color = GRID_COLOR, width: float = 1.0) -> Shape:
    """Token grid lines at x edges `xs` and y edges `ys` (TokenGrid.edges())."""
    v = [(x, ys[0], x, ys[-1]) for x in xs]
    h = [(xs[0], y, xs[-1], y) for y in ys]
    return Shape("lines", np.asarray(v + h, dtype=np.float64), color, width)


def selection_rect(rect, color: Color = SELECTION_COLOR, width: float = 2.0) -> Shape:
    return Shape("rect", tuple(float(v) for v in rect), color, width)


def crop_shade(visible_rect, color: Color = SHADE_COLOR) -> Shape:
    return Shape("shade", tuple(float(v) for v in visible_rect), color, 0.0, fill=color)


@dataclass
class MapView:
    """One image view: the original image, a [rows, cols] map drawn over `extent`, vector marks."""

    title: str  # short, above the panel
    description: str  # for the caption, e.g. "attention from the CLS token, layer 11, head 3"
    image: np.ndarray | None  # (H, W, 3) uint8
    values: np.ndarray | None = None  # (rows, cols) float; NaN is transparent
    extent: tuple | None = None  # (x0, y0, x1, y1) where `values` is drawn
    opacity: float = 0.6
    shapes: list[Shape] = field(default_factory=list)
    levels: tuple | None = None  # colour scale; None: min..max of `values`
    value_label: str = "attention"
    view_rect: tuple | None = None  # the region the screen shows (zoom), for "as zoomed" exports
    meta: dict = field(default_factory=dict)  # method and parameters, for the sidecar
    image_rect: tuple | None = None  # where `image` is drawn; None: (0, 0, W, H)

    def placed_image_rect(self) -> tuple | None:
        if self.image is None:
            return None
        if self.image_rect is not None:
            return tuple(float(v) for v in self.image_rect)
        h, w = self.image.shape[:2]
        return 0.0, 0.0, float(w), float(h)

    def full_rect(self) -> tuple:
        """Image and map extent together: what a full export shows."""
        rects = []
        if self.image is not None:
            rects.append(self.placed_image_rect())
        if self.extent is not None:
            rects.append(tuple(float(v) for v in self.extent))
        if not rects:
            return (0.0, 0.0, 1.0, 1.0)
        r = np.array(rects)
        return float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max())


@dataclass
class TileGrid:
    """Small maps in a rows x cols grid (ViT: layers x heads for one query)."""

    title: str
    description: str
    maps: np.ndarray  # (rows, cols, r, c) float
    row_name: str = "layer"
    col_name: str = "head"
    row_labels: list[str] | None = None  # default "L0", "L1", ... / "H0", ...
    col_labels: list[str] | None = None
    selected: tuple | None = None  # (row, col) outlined; col None outlines the whole row
    tile_aspect: float | None = None  # tile width / height as the image shows it; None: c / r
    value_label: str = "attention"
    meta: dict = field(default_factory=dict)


Source = Union[MapView, TileGrid]


@dataclass
class ExportSources:
    """What a panel can export right now, for one set of view settings."""

    views: dict  # name -> MapView | TileGrid, in the order a dialog should list them
    settings: dict  # the resolved view settings (JSON-able), recorded in sidecars
    colormap: str = "viridis"
    current: str = ""  # the view the user is looking at (Ctrl+C copies it)


@dataclass
class ExportContext:
    """Where the analysis came from, for captions and the provenance record."""

    image_name: str
    image_path: str | None  # None for pasted / dropped images
    model: str
    family: str
    weights: str  # as asked: "pretrained", "random" or a checkpoint path
    weights_label: str  # what ran: "pretrained", "random", "ckpt.pth"
    trained: bool
    device: str = "cpu"
    image_size: tuple = (0, 0)
    pixels_sha256: str = ""

    @staticmethod
    def from_analysis(analysis, image_path: str | None = None, weights: str | None = None,
                      image_name: str | None = None) -> "ExportContext":
        img = analysis.image
        name = image_name or getattr(analysis, "image_name", None) or (
            os.path.basename(image_path) if image_path else "image")
        return ExportContext(
            image_name=name, image_path=os.path.abspath(image_path) if image_path else None,
            model=analysis.model_name, family=analysis.family,
            weights=str(weights) if weights is not None else analysis.weights,
            weights_label=analysis.weights, trained=bool(analysis.trained), device=analysis.device,
            image_size=tuple(img.size), pixels_sha256=hashlib.sha256(img.tobytes()).hexdigest())

    def weights_text(self) -> str:
        if not self.trained:
            return "random weights, UNTRAINED"
        if self.weights_label == "pretrained":
            return "pretrained weights"
        return f"weights {self.weights_label}"


# -- what the user asks for ----------------------------------------------------------------------
@dataclass
class ExportRequest:
    """One figure. views: one MapView name (a single view), several (a comparison, side by side),
    or one TileGrid name (the heads x layers grid)."""

    views: list
    format: str = "png"
    width: int | None = None  # PNG width in pixels; None: from dpi
    dpi: float = 192.0  # PNG resolution when width is None (a figure unit is 1/96 inch)
    aspect: str = "auto"  # "auto" or "16:9" (the canvas padded to a slide's shape)
    theme: str = "light"  # "light" (slides, paper) or "dark" (as on screen)
    title: bool = True
    colorbar: bool = True
    caption: bool = True
    region: list | None = None  # (x0, y0, x1, y1) in image pixels to show; None: everything
    rows: list | None = None  # TileGrid rows (layers) to include; None: all
    cols: list | None = None  # TileGrid columns (heads) to include; None: all
    tile_scale: str = "tile"  # "tile": each tile its own min..max; "shared": one scale for all
    shared_scale: bool = True  # comparison panels on one colour scale
    settings: dict = field(default_factory=dict)  # view-setting overrides for export_sources()

    def to_json(self) -> dict:
        return _jsonable(dataclasses.asdict(self))

    @staticmethod
    def from_json(d: dict) -> "ExportRequest":
        names = {f.name for f in dataclasses.fields(ExportRequest)}
        return ExportRequest(**{k: v for k, v in d.items() if k in names})


@dataclass
class ExportResult:
    path: str
    sidecar: str
    metadata: dict


# -- provenance ----------------------------------------------------------------------------------
_hash_cache: dict = {}


def file_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of a file (cached by path, size and mtime: checkpoints are hundreds of MB)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def _weights_file(ctx: ExportContext) -> str | None:
    if ctx.weights not in ("pretrained", "random") and os.path.isfile(ctx.weights):
        return os.path.abspath(ctx.weights)
    if ctx.weights == "pretrained" and ctx.trained:
        try:
            from ..core.models.registry import get_spec
            from ..core.models.weights import cached_weights_path

            p = cached_weights_path(get_spec(ctx.model))
            return str(p) if p else None
        except Exception:  # provenance is best effort; the export itself must not fail
            return None
    return None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def build_metadata(ctx: ExportContext, sources: ExportSources, request: ExportRequest, figure) -> dict:
    """The provenance record embedded in PNGs and written as FILE.json. No timestamps: re-running
    an export from it reproduces the file byte for byte."""
    from .. import __version__

    wfile = _weights_file(ctx)
    req = request.to_json()
    req["settings"] = _jsonable(sources.settings)  # resolved: re-running needs no panel defaults
    return _jsonable({
        "vitviz_version": __version__,
        "image": {"name": ctx.image_name, "path": ctx.image_path,
                  "sha256": file_sha256(ctx.image_path) if ctx.image_path else None,
                  "size": list(ctx.image_size), "pixels_sha256": ctx.pixels_sha256},
        "model": {"name": ctx.model, "family": ctx.family, "weights": ctx.weights,
                  "weights_used": ctx.weights_label, "trained": ctx.trained,
                  "weights_file": wfile, "weights_sha256": file_sha256(wfile) if wfile else None,
                  "device": ctx.device},
        "figure": {"kind": figure.kind, "width": figure.width, "height": figure.height,
                   "units": "1/96 inch"},
        "panels": figure.panels,
        "colormap": sources.colormap,
        "scale": figure.scale,
        "caption": figure.caption,
        "request": req,
    })


# -- writing -------------------------------------------------------------------------------------
def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full (no space left on device)"
    return exc.strerror or str(exc)


def write_files_atomic(files: list[tuple[str, bytes]]) -> None:
    """Write each (path, data) to a temporary file in the same folder, then os.replace them into
    place. On any failure nothing is left behind (temporaries removed, files already replaced in
    this call removed) and ExportError names the path and the reason."""
    temps: list[tuple[str, str]] = []
    placed: list[str] = []
    current = files[0][0] if files else ""
    try:
        for path, data in files:
            current = path
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
        for tmp, path in temps:
            current = path
            os.replace(tmp, path)
            placed.append(path)
    except OSError as exc:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for path in placed:
            os.unlink(path)
        raise ExportError(f"Cannot write {current}: {_reason(exc)}") from None


def sidecar_path(path: str | os.PathLike) -> str:
    return str(path) + ".json"


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The file's extension decides; `fmt` only for a name without one."""
    fmt = (Path(path).suffix.lstrip(".") or fmt or "png").lower()
    if fmt not in FORMATS:
        raise ExportError(f"Cannot export {path}: unknown format {fmt!r} (use .png, .svg or .pdf)")
    return fmt


def render(sources: ExportSources, request: ExportRequest, ctx: ExportContext) -> tuple[bytes, dict]:
    """The figure's file contents and its provenance record."""
    from .export_figures import build_figure, render_bytes

    fig = build_figure(sources, request, ctx)
    meta = build_metadata(ctx, sources, request, fig)
    if request.format == "png":
        meta["figure"]["pixels"] = list(fig.pixel_size(request))
        for p in meta["panels"]:
            s = fig.png_scale(request)
            p["rect_px"] = [round(v * s, 3) for v in p["rect"]]
    return render_bytes(fig, request, meta), meta


def export_sources_to_file(sources: ExportSources, request: ExportRequest, ctx: ExportContext,
                           path: str | os.PathLike) -> ExportResult:
    """Render and write `path` and `path`.json atomically."""
    path = str(path)
    request.format = format_for(path, request.format)
    data, meta = render(sources, request, ctx)
    side = dict(meta)
    side["output"] = {"file": os.path.basename(path), "format": request.format,
                      "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    sidecar = sidecar_path(path)
    write_files_atomic([(path, data), (sidecar, (json.dumps(side, indent=2) + "\n").encode())])
    return ExportResult(path, sidecar, side)


def export_panel(panel, request: ExportRequest, ctx: ExportContext, path) -> ExportResult:
    """Export from a panel (anything with export_sources())."""
    return export_sources_to_file(panel.export_sources(request.settings or None), request, ctx, path)


def figure_qimage(sources: ExportSources, request: ExportRequest, ctx: ExportContext):
    """The figure as a QImage (the clipboard)."""
    from .export_figures import build_figure, render_qimage

    return render_qimage(build_figure(sources, request, ctx), request)


def parse_head(value, heads: int, where: str = "the model") -> int | str:
    """An export's head setting -> a head index or a fusion name; ExportError says what is wrong."""
    from ..core.analysis.heads import FUSIONS

    head = int(value) if isinstance(value, (int, np.integer)) or str(value).isdigit() else str(value)
    if isinstance(head, int) and not 0 <= head < heads:
        raise ExportError(f"head {head} is out of range ({where} has {heads} heads: 0..{heads - 1})")
    if isinstance(head, str) and head not in FUSIONS:
        raise ExportError(f"head must be a number or one of {', '.join(FUSIONS)}, not {head!r}")
    return head
