"""An export's request, its provenance record and the atomic writes (no Qt at all)."""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..core.figures import ExportError, ExportSources
from ..core.json_values import jsonable

FORMATS = ("png", "svg", "pdf")

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
        name = image_name or (os.path.basename(image_path) if image_path else "image")
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
        return jsonable(dataclasses.asdict(self))

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


def build_metadata(ctx: ExportContext, sources: ExportSources, request: ExportRequest, figure) -> dict:
    """The provenance record embedded in PNGs and written as FILE.json. No timestamps: re-running
    an export from it reproduces the file byte for byte."""
    from .. import __version__

    wfile = _weights_file(ctx)
    req = request.to_json()
    req["settings"] = jsonable(sources.settings)  # resolved: re-running needs no panel defaults
    return jsonable({
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
    except BaseException as exc:  # OSError, and Ctrl+C mid-write: nothing half-written stays
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for path in placed:
            try:
                os.unlink(path)
            except FileNotFoundError:  # the folder went away mid-write (a pulled stick): nothing left
                pass
        if not isinstance(exc, OSError):
            raise
        raise ExportError(f"Cannot write {current}: {_reason(exc)}") from None


def sidecar_path(path: str | os.PathLike) -> str:
    return str(path) + ".json"


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The file's extension decides; `fmt` only for a name without one."""
    fmt = (Path(path).suffix.lstrip(".") or fmt or "png").lower()
    if fmt not in FORMATS:
        raise ExportError(f"Cannot export {path}: unknown format {fmt!r} (use .png, .svg or .pdf)")
    return fmt
