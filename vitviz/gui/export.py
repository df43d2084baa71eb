"""Exporting figures for slides: render a figure description to PNG/SVG/PDF and write it safely.

What is drawn is a Qt-free description (vitviz.core.figures: MapView, TileGrid, Shape), built per
family from (analysis, view state) by the family table (vitviz.core.families). The layouts and the
rendering use QtGui only (QPainter on a QImage, QSvgGenerator, QPdfWriter): no widgets, so the
headless `vitviz export` runs where PySide6.QtWidgets cannot be imported.
"""
from __future__ import annotations

import hashlib
import json
import os

from ..core.figures import (ExportError, ExportSources, MapView, Shape, Source, TileGrid,  # noqa: F401
                            crop_shade, grid_lines, parse_head, selection_rect)
from .export_figures import build_figure, render_bytes, render_qimage
from .export_request import (FORMATS, ExportContext, ExportRequest, ExportResult,  # noqa: F401
                             build_metadata, file_sha256, format_for, sidecar_path, write_files_atomic)


def render(sources: ExportSources, request: ExportRequest, ctx: ExportContext) -> tuple[bytes, dict]:
    """The figure's file contents and its provenance record."""

    fig = build_figure(sources, request, ctx)
    meta = build_metadata(ctx, sources, request, fig)
    if request.format == "png":
        meta["figure"]["pixels"] = list(fig.pixel_size(request))
        for p in meta["panels"]:
            s = fig.png_scale(request)
            p["rect_px"] = [round(v * s, 3) for v in p["rect"]]
    return render_bytes(fig, request, meta), meta


def export_sources_to_file(sources: ExportSources, request: ExportRequest, ctx: ExportContext,
                           path: str | os.PathLike, extra: dict | None = None) -> ExportResult:
    """Render and write `path` and `path`.json atomically. `extra`: more keys for the sidecar only
    (the CLI's resume key), not embedded in the figure."""
    path = str(path)
    request.format = format_for(path, request.format)
    data, meta = render(sources, request, ctx)
    side = {**meta, **(extra or {})}
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

    return render_qimage(build_figure(sources, request, ctx), request)
