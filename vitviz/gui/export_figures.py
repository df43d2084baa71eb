"""Exported figures: build_figure() lays one out (export_layouts), render_bytes() writes it as PNG,
SVG or PDF and render_qimage() draws it for the clipboard, through the one QPainter routine of
export_painter. vitviz.gui.export calls these; the names below are the public interface.
"""
from __future__ import annotations

import json

from PySide6 import QtCore, QtGui

from .export_request import ExportError, ExportRequest
from .export_layouts import build_figure, finite_range, nice_ticks
from .export_painter import THEMES, Figure, Theme, heat_rgba, qcolor

__all__ = ["THEMES", "Figure", "Theme", "build_figure", "finite_range", "heat_rgba", "nice_ticks",
           "render_bytes", "render_qimage"]


def render_qimage(fig: Figure, request: ExportRequest) -> QtGui.QImage:
    s = fig.png_scale(request)
    w, h = fig.pixel_size(request)
    if w * h > 400_000_000:
        raise ExportError(f"{w} x {h} pixels is too large an image; choose a smaller width")
    img = QtGui.QImage(w, h, QtGui.QImage.Format.Format_RGB32)
    if img.isNull():
        raise ExportError(f"Not enough memory for a {w} x {h} image; choose a smaller width")
    img.fill(qcolor(fig.theme.bg))
    dpm = int(round(s * 96 / 0.0254))
    img.setDotsPerMeterX(dpm)
    img.setDotsPerMeterY(dpm)
    p = QtGui.QPainter(img)
    p.scale(s, s)
    fig.paint(p, vector=False)
    p.end()
    return img


def _buffer() -> QtCore.QBuffer:
    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    return buf


def render_bytes(fig: Figure, request: ExportRequest, meta: dict) -> bytes:
    from .. import __version__

    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    buf = _buffer()
    if request.format == "png":
        img = render_qimage(fig, request)
        img.setText("vitviz", text)
        img.setText("Software", f"vitviz {__version__}")
        img.setText("Description", fig.caption)
        if not img.save(buf, "PNG", 80):  # zlib level ~2: a third of the time of the default, ~10% larger
            raise ExportError("Qt could not encode the PNG")
    elif request.format == "svg":
        from PySide6 import QtSvg

        gen = QtSvg.QSvgGenerator()
        gen.setOutputDevice(buf)
        gen.setResolution(96)
        gen.setSize(QtCore.QSize(int(fig.width), int(fig.height)))
        gen.setViewBox(QtCore.QRectF(0, 0, fig.width, fig.height))
        gen.setTitle(fig.caption.splitlines()[0] if fig.caption else "vitviz figure")
        gen.setDescription(text)
        p = QtGui.QPainter(gen)
        fig.paint(p, vector=True)
        p.end()
    elif request.format == "pdf":
        writer = QtGui.QPdfWriter(buf)
        writer.setCreator(f"vitviz {__version__}")
        writer.setTitle(fig.caption.splitlines()[0] if fig.caption else "vitviz figure")
        writer.setPageSize(QtGui.QPageSize(QtCore.QSizeF(fig.width * 0.75, fig.height * 0.75),
                                           QtGui.QPageSize.Unit.Point, "",
                                           QtGui.QPageSize.SizeMatchPolicy.ExactMatch))
        writer.setPageMargins(QtCore.QMarginsF(0, 0, 0, 0))
        writer.setResolution(1200)
        p = QtGui.QPainter(writer)
        p.scale(writer.width() / fig.width, writer.width() / fig.width)
        fig.paint(p, vector=True)
        p.end()
    else:
        raise ExportError(f"unknown format {request.format!r}")
    data = bytes(buf.data())
    if not data:
        raise ExportError(f"Qt produced an empty {request.format.upper()}")
    return data
