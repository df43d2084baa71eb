"""Figure layouts (one view, panels side by side, the heads x layers grid) and one QPainter routine
that draws them into a QImage (PNG, clipboard), a QSvgGenerator (SVG) or a QPdfWriter (PDF).

Figure units are 1/96 inch. Lines, rectangles and text are vector in SVG/PDF. The photo is embedded
at its full resolution; heatmaps are embedded nearest-neighbour upsampled (and drawn without
smoothing in PNGs), so a token is a crisp block in every viewer. SVG has no clipping in Qt's
generator, so everything is cropped to the shown region here, geometrically.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from PySide6 import QtCore, QtGui

from .colormaps import lookup_table, map_values
from .export import ExportContext, ExportError, ExportRequest, ExportSources, MapView, TileGrid
from .views.head_grid import normalise_tiles

FONT = "DejaVu Sans"
MARGIN = 20.0
VECTOR_MAP_PX = 1024  # heatmaps in SVG/PDF: upsampled to at least this many pixels on the long side
VECTOR_TILE_PX = 128  # grid tiles in SVG/PDF: at least this many pixels per tile side


@dataclass(frozen=True)
class Theme:
    bg: tuple
    fg: tuple
    muted: tuple
    empty: tuple  # parts of the shown region outside the image


THEMES = {"light": Theme((255, 255, 255), (25, 25, 25), (80, 80, 80), (228, 228, 228)),
          "dark": Theme((32, 33, 36), (232, 234, 237), (170, 172, 176), (18, 18, 20))}


def _qcolor(c) -> QtGui.QColor:
    return QtGui.QColor(*[int(v) for v in c])


def _font(size: float, bold: bool = False) -> QtGui.QFont:
    f = QtGui.QFont(FONT)
    f.setPixelSize(max(1, int(round(size))))
    f.setBold(bold)
    f.setHintingPreference(QtGui.QFont.HintingPreference.PreferNoHinting)  # same metrics on any device
    return f


def _advance(text: str, size: float, bold: bool = False) -> float:
    return QtGui.QFontMetricsF(_font(size, bold)).horizontalAdvance(text)


def _fit(text: str, width: float, size: float, bold: bool = False) -> str:
    """`text` elided with "…" to fit `width` (titles over narrow panels)."""
    fm = QtGui.QFontMetricsF(_font(size, bold))
    return fm.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, width)


def _wrapped_height(text: str, size: float, width: float) -> float:
    fm = QtGui.QFontMetricsF(_font(size))
    r = fm.boundingRect(QtCore.QRectF(0, 0, width, 1e6), int(QtCore.Qt.TextFlag.TextWordWrap), text)
    return r.height()


def _qimage(arr: np.ndarray) -> QtGui.QImage:
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    fmt = QtGui.QImage.Format.Format_RGBA8888 if arr.shape[2] == 4 else QtGui.QImage.Format.Format_RGB888
    return QtGui.QImage(arr.data, w, h, arr.strides[0], fmt).copy()


def _upsample(arr: np.ndarray, k: int) -> np.ndarray:
    return arr if k <= 1 else np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def heat_rgba(values: np.ndarray, cmap: str, lo: float, hi: float, opacity: float = 1.0) -> np.ndarray:
    """[rows, cols] -> RGBA exactly as the views draw it; NaN transparent; alpha = opacity (baked
    into the pixels, so SVG and PDF viewers need no group opacity)."""
    v = np.asarray(values, np.float64)
    rgba = map_values(cmap, np.nan_to_num(v, nan=lo), lo, hi)
    rgba[..., 3] = int(round(255 * float(opacity)))
    rgba[~np.isfinite(v)] = 0
    return rgba


def finite_range(arrays) -> tuple[float, float]:
    vals = [a[np.isfinite(a)] for a in arrays if a is not None]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round values in [lo, hi]: the finest 1/2/2.5/5 x 10^k step giving at most `most` ticks."""
    span = hi - lo
    if not span > 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / most))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= most:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    return [round(float(v), 12) for v in np.arange(first, hi + step * 1e-6, step)]


def _clip_segment(x0, y0, x1, y1, r):
    """Liang-Barsky: the part of a segment inside rect r = (x0, y0, x1, y1), or None."""
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - r[0]), (dx, r[2] - x0), (-dy, y0 - r[1]), (dy, r[3] - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def _intersect(a, b):
    r = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return r if r[2] > r[0] and r[3] > r[1] else None


# -- drawables -----------------------------------------------------------------------------------
@dataclass
class Text:
    rect: tuple  # x, y, w, h
    text: str
    size: float
    color: tuple
    bold: bool = False
    align: int = int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter)
    wrap: bool = False
    vertical: bool = False  # reads bottom to top

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        p.setFont(_font(self.size, self.bold))
        p.setPen(_qcolor(self.color))
        x, y, w, h = self.rect
        flags = self.align | (int(QtCore.Qt.TextFlag.TextWordWrap) if self.wrap else 0)
        if self.vertical:
            p.save()
            p.translate(x, y + h)
            p.rotate(-90)
            p.drawText(QtCore.QRectF(0, 0, h, w), flags, self.text)
            p.restore()
        else:
            p.drawText(QtCore.QRectF(x, y, w, h), flags, self.text)


@dataclass
class MapPanel:
    rect: tuple  # x, y, w, h in figure units
    view: MapView
    region: tuple  # x0, y0, x1, y1 in image pixels
    levels: tuple
    cmap: str
    empty: tuple

    def _map(self):
        x, y, w, h = self.rect
        rx0, ry0, rx1, ry1 = self.region
        sx, sy = w / (rx1 - rx0), h / (ry1 - ry0)
        return (lambda v: x + (v - rx0) * sx), (lambda v: y + (v - ry0) * sy), sx, sy

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        X, Y, sx, sy = self._map()
        x, y, w, h = self.rect
        R = self.region
        p.save()
        p.fillRect(QtCore.QRectF(x, y, w, h), _qcolor(self.empty))
        if not vector:
            p.setClipRect(QtCore.QRectF(x, y, w, h))
        v = self.view
        if v.image is not None:  # full resolution, cropped to whole image pixels in the region
            ih, iw = v.image.shape[:2]
            bx0, by0, bx1, by1 = v.placed_image_rect()
            kx, ky = iw / (bx1 - bx0), ih / (by1 - by0)  # image pixels per region unit
            ix0, iy0 = max(0, math.floor((R[0] - bx0) * kx)), max(0, math.floor((R[1] - by0) * ky))
            ix1, iy1 = min(iw, math.ceil((R[2] - bx0) * kx)), min(ih, math.ceil((R[3] - by0) * ky))
            if ix1 > ix0 and iy1 > iy0:
                p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, True)
                p.drawImage(QtCore.QRectF(X(bx0 + ix0 / kx), Y(by0 + iy0 / ky), (ix1 - ix0) / kx * sx,
                                          (iy1 - iy0) / ky * sy), _qimage(v.image[iy0:iy1, ix0:ix1]))
        if v.values is not None and v.extent is not None:
            self._paint_values(p, vector, X, Y)
        for shape in v.shapes:
            self._paint_shape(p, shape, X, Y)
        p.restore()

    def _paint_values(self, p, vector, X, Y) -> None:
        v, R = self.view, self.region
        rgba = heat_rgba(v.values, self.cmap, *self.levels, v.opacity)
        rows, cols = rgba.shape[:2]
        ex0, ey0, ex1, ey1 = v.extent
        cw, ch = (ex1 - ex0) / cols, (ey1 - ey0) / rows
        c0, c1 = max(0, math.floor((R[0] - ex0) / cw)), min(cols, math.ceil((R[2] - ex0) / cw))
        r0, r1 = max(0, math.floor((R[1] - ey0) / ch)), min(rows, math.ceil((R[3] - ey0) / ch))
        if c1 <= c0 or r1 <= r0:
            return
        k = max(1, math.ceil(VECTOR_MAP_PX / max(rows, cols))) if vector else 1
        sub = _upsample(rgba[r0:r1, c0:c1], k)
        # crop to the region in upsampled pixels (exact in raster output, where the clip also holds)
        gx0, gy0 = ex0 + c0 * cw, ey0 + r0 * ch
        px0 = min(max(0, math.floor((R[0] - gx0) / cw * k)), sub.shape[1]) if vector else 0
        py0 = min(max(0, math.floor((R[1] - gy0) / ch * k)), sub.shape[0]) if vector else 0
        px1 = max(px0, min(sub.shape[1], math.ceil((R[2] - gx0) / cw * k))) if vector else sub.shape[1]
        py1 = max(py0, min(sub.shape[0], math.ceil((R[3] - gy0) / ch * k))) if vector else sub.shape[0]
        if px1 <= px0 or py1 <= py0:
            return
        tx0, ty0 = X(gx0 + px0 * cw / k), Y(gy0 + py0 * ch / k)
        tx1, ty1 = X(gx0 + px1 * cw / k), Y(gy0 + py1 * ch / k)
        p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)  # tokens stay crisp
        p.drawImage(QtCore.QRectF(tx0, ty0, tx1 - tx0, ty1 - ty0), _qimage(sub[py0:py1, px0:px1]))

    def _paint_shape(self, p, shape, X, Y) -> None:
        R = self.region
        if shape.kind == "shade":
            area = _intersect(self.view.placed_image_rect() or self.view.full_rect(), R)
            if area is None:
                return
            path = QtGui.QPainterPath()
            path.setFillRule(QtCore.Qt.FillRule.OddEvenFill)
            path.addRect(QtCore.QRectF(QtCore.QPointF(X(area[0]), Y(area[1])), QtCore.QPointF(X(area[2]), Y(area[3]))))
            seen = _intersect(tuple(shape.coords), area)
            if seen is not None:
                path.addRect(QtCore.QRectF(QtCore.QPointF(X(seen[0]), Y(seen[1])),
                                           QtCore.QPointF(X(seen[2]), Y(seen[3]))))
            p.fillPath(path, _qcolor(shape.fill or shape.color))
            return
        pen = QtGui.QPen(_qcolor(shape.color), shape.width)
        pen.setCosmetic(False)
        pen.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
        pen.setJoinStyle(QtCore.Qt.PenJoinStyle.MiterJoin)
        if shape.dashed:
            pen.setStyle(QtCore.Qt.PenStyle.DashLine)
        if shape.kind == "lines":
            segs = [_clip_segment(*map(float, s), R) for s in np.asarray(shape.coords).reshape(-1, 4)]
            lines = [QtCore.QLineF(X(a), Y(b), X(c), Y(d)) for a, b, c, d in (s for s in segs if s)]
            if lines:
                p.setPen(pen)
                p.drawLines(lines)
            return
        if shape.kind != "rect":
            raise ExportError(f"unknown shape kind {shape.kind!r}")
        x0, y0, x1, y1 = shape.coords
        inside = _intersect((x0, y0, x1, y1), R)
        if inside is None:
            return
        if shape.fill is not None:
            p.fillRect(QtCore.QRectF(QtCore.QPointF(X(inside[0]), Y(inside[1])),
                                     QtCore.QPointF(X(inside[2]), Y(inside[3]))), _qcolor(shape.fill))
        if R[0] <= x0 and R[1] <= y0 and x1 <= R[2] and y1 <= R[3]:
            p.setPen(pen)
            p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
            p.drawRect(QtCore.QRectF(QtCore.QPointF(X(x0), Y(y0)), QtCore.QPointF(X(x1), Y(y1))))
        else:  # partly outside: only the edges inside the region, no false border
            edges = [(x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)]
            segs = [s for s in (_clip_segment(*e, R) for e in edges) if s]
            p.setPen(pen)
            p.drawLines([QtCore.QLineF(X(a), Y(b), X(c), Y(d)) for a, b, c, d in segs])
        if shape.label and R[0] <= x0 < R[2] and R[1] <= y0 < R[3]:
            size = 11.0
            tw = _advance(shape.label, size) + 6
            box = QtCore.QRectF(X(x0), Y(y0), tw, size + 6)
            p.fillRect(box, _qcolor(shape.color))
            p.setFont(_font(size))
            p.setPen(QtGui.QColor(255, 255, 255) if sum(shape.color[:3]) < 500 else QtGui.QColor(0, 0, 0))
            p.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignCenter), shape.label)


@dataclass
class Tiles:
    origin: tuple  # x, y of tile (0, 0)
    tile: tuple  # w, h
    gap: float
    rgb: np.ndarray  # (R, C, r, c, 3) uint8
    selected: tuple | None  # (row, col | None) in shown indices

    def rect(self, i: int, j: int) -> QtCore.QRectF:
        (x, y), (w, h) = self.origin, self.tile
        return QtCore.QRectF(x + j * (w + self.gap), y + i * (h + self.gap), w, h)

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        R, C, r, c, _ = self.rgb.shape
        k = max(1, math.ceil(VECTOR_TILE_PX / max(r, c))) if vector else 1
        p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)
        for i in range(R):
            for j in range(C):
                p.drawImage(self.rect(i, j), _qimage(_upsample(self.rgb[i, j], k)))
        if self.selected is not None:
            i, j = self.selected
            rect = self.rect(i, j) if j is not None else self.rect(i, 0).united(self.rect(i, C - 1))
            pen = QtGui.QPen(QtGui.QColor(255, 59, 48), 2.0)
            pen.setJoinStyle(QtCore.Qt.PenJoinStyle.MiterJoin)
            p.setPen(pen)
            p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
            p.drawRect(rect.adjusted(-1.0, -1.0, 1.0, 1.0))


@dataclass
class Colorbar:
    rect: tuple  # the bar: x, y, w, h
    cmap: str
    lo: float
    hi: float
    ticks: list  # (value, label)
    label: str
    fg: tuple
    size: float = 12.0

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        x, y, w, h = self.rect
        lut = lookup_table(self.cmap)[::-1, :3]  # top = high
        p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawImage(QtCore.QRectF(x, y, w, h), _qimage(np.repeat(lut[:, None, :], 4 if vector else 1, axis=1)))
        pen = QtGui.QPen(_qcolor(self.fg), 0.75)
        p.setPen(pen)
        p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        p.drawRect(QtCore.QRectF(x, y, w, h))
        p.setFont(_font(self.size))
        span = self.hi - self.lo
        for value, text in self.ticks:
            ty = y + h * (1 - (value - self.lo) / span)
            p.drawLine(QtCore.QLineF(x + w, ty, x + w + 4, ty))
            p.drawText(QtCore.QRectF(x + w + 7, ty - self.size, 200, 2 * self.size),
                       int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter), text)


# -- figures -------------------------------------------------------------------------------------
@dataclass
class Figure:
    kind: str  # "view" | "comparison" | "grid"
    width: float
    height: float
    theme: Theme
    items: list = field(default_factory=list)
    panels: list = field(default_factory=list)  # layout and method of each panel, for the sidecar
    scale: dict = field(default_factory=dict)
    caption: str = ""

    def png_scale(self, request: ExportRequest) -> float:
        return request.width / self.width if request.width else request.dpi / 96.0

    def pixel_size(self, request: ExportRequest) -> tuple[int, int]:
        s = self.png_scale(request)
        return max(1, int(round(self.width * s))), max(1, int(round(self.height * s)))

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        p.fillRect(QtCore.QRectF(0, 0, self.width, self.height), _qcolor(self.theme.bg))
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        for item in self.items:
            item.paint(p, vector)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _colorbar(x: float, top: float, height: float, cmap: str, lo: float, hi: float, label: str,
              theme: Theme, ticks=None) -> tuple[list, float]:
    """Colorbar items at (x, top); returns (items, right edge)."""
    ticks = ticks or [(t, _fmt(t)) for t in nice_ticks(lo, hi)]
    size = 12.0
    tw = max(_advance(t, size) for _, t in ticks)
    bar = Colorbar((x, top, 16.0, height), cmap, lo, hi, ticks, label, theme.fg, size)
    lx = x + 16 + 7 + tw + 8
    lab = Text((lx, top, size + 6, height), label, size + 1, theme.fg, vertical=True,
               align=int(QtCore.Qt.AlignmentFlag.AlignCenter))
    return [bar, lab], lx + size + 6


def _finish(fig: Figure, content_w: float, content_h: float, request: ExportRequest) -> Figure:
    """Canvas size (16:9 if asked, content centred), rounded up to whole PDF points."""
    if request.aspect == "16:9":  # exactly 16:9 in whole multiples of 4 units
        m = math.ceil(max(content_w / 64, content_h / 36))
        w, h = 64 * m, 36 * m
    elif request.aspect in ("auto", "", None):
        w, h = math.ceil(content_w / 4) * 4, math.ceil(content_h / 4) * 4  # 4 units = 3 whole points
    else:
        raise ExportError(f"unknown aspect {request.aspect!r} (use auto or 16:9)")
    dx, dy = (w - content_w) / 2, (h - content_h) / 2
    for item in fig.items:
        _shift(item, dx, dy)
    for pan in fig.panels:
        pan["rect"] = [round(v + (dx, dy)[i % 2], 4) for i, v in enumerate(pan["rect"])]
        if "origin" in pan:
            pan["origin"] = [round(pan["origin"][0] + dx, 4), round(pan["origin"][1] + dy, 4)]
    fig.width, fig.height = float(w), float(h)
    return fig


def _shift(item, dx: float, dy: float) -> None:
    if isinstance(item, Tiles):
        item.origin = (item.origin[0] + dx, item.origin[1] + dy)
    else:
        x, y, *rest = item.rect
        item.rect = (x + dx, y + dy, *rest)


def _names(views) -> str:
    """View names for messages, "head:0…head:11" runs shortened."""
    out, run = [], []
    for n in list(views) + [""]:
        prefix = n.split(":")[0] + ":" if ":" in n else None
        if run and (prefix is None or not run[0].startswith(prefix)):
            out.append(run[0] if len(run) == 1 else f"{run[0]}…{run[-1]}")
            run = []
        if prefix is not None:
            run.append(n)
        elif n:
            out.append(n)
    return ", ".join(out)


def _caption(ctx: ExportContext, parts: list[str]) -> str:
    return "\n".join([f"{ctx.image_name} · {ctx.model} ({ctx.weights_text()})", *parts])


def build_figure(sources: ExportSources, request: ExportRequest, ctx: ExportContext) -> Figure:
    if not request.views:
        raise ExportError("Nothing to export: no view chosen")
    missing = [n for n in request.views if n not in sources.views]
    if missing:
        raise ExportError(f"The {missing[0]!r} view is not available for this model ({ctx.model}, a "
                          f"{ctx.family} model); available: {_names(sources.views)}")
    theme = THEMES.get(request.theme)
    if theme is None:
        raise ExportError(f"unknown theme {request.theme!r} (use light or dark)")
    views = [sources.views[n] for n in request.views]
    if len(views) == 1 and isinstance(views[0], TileGrid):
        return _grid_figure(request.views[0], views[0], sources, request, ctx, theme)
    if any(isinstance(v, TileGrid) for v in views):
        raise ExportError("A grid can only be exported on its own, not side by side with other views")
    return _maps_figure(views, sources, request, ctx, theme)


def _maps_figure(views, sources, request, ctx, theme) -> Figure:
    n = len(views)
    kind = "view" if n == 1 else "comparison"
    fixed = views[0].levels if n == 1 else None
    lo, hi = fixed if fixed is not None else finite_range([v.values for v in views])
    region = tuple(float(v) for v in request.region) if request.region else None
    ncols = n if n <= 4 else math.ceil(n / math.ceil(n / 4))
    nrows = math.ceil(n / ncols)
    base = {1: 640.0, 2: 460.0, 3: 380.0}.get(n, 300.0)
    regions = [region or v.full_rect() for v in views]
    a = max(1e-6, (regions[0][2] - regions[0][0]) / max(1e-6, regions[0][3] - regions[0][1]))
    pw, ph = base, base / a
    if ph > base * 1.2:
        ph = base * 1.2
        pw = ph * a
    title_h = 26.0 if request.title else 0.0
    gap = 16.0
    fig = Figure(kind, 0, 0, theme)
    for i, (name, v, reg) in enumerate(zip(request.views, views, regions)):
        row, col = divmod(i, ncols)
        x = MARGIN + col * (pw + gap)
        y = MARGIN + row * (title_h + ph + gap) + title_h
        if request.title:
            fig.items.append(Text((x, y - title_h, pw, title_h - 4), _fit(v.title, pw, 14.0, n == 1), 14.0,
                                  theme.fg, bold=n == 1,
                                  align=int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignBottom)))
        fig.items.append(MapPanel((x, y, pw, ph), v, reg, (lo, hi), sources.colormap, theme.empty))
        fig.panels.append({"name": name, "title": v.title, "rect": [x, y, x + pw, y + ph],
                           "region": list(reg), "levels": [lo, hi], **v.meta})
    right = MARGIN + ncols * pw + (ncols - 1) * gap
    bottom = MARGIN + nrows * (title_h + ph + gap) - gap
    has_values = any(v.values is not None for v in views)
    if fixed is not None:
        mode, how = "fixed", f"fixed scale {_fmt(lo)} to {_fmt(hi)}"
    elif n == 1:
        mode, how = "map", f"scaled to this map's min–max ({_fmt(lo)} to {_fmt(hi)})"
    else:
        mode, how = "shared", f"one scale shared by all panels ({_fmt(lo)} to {_fmt(hi)})"
    fig.scale = {"mode": mode, "levels": [lo, hi], "colormap": sources.colormap} if has_values else {}
    if request.colorbar and has_values:
        label = " / ".join(dict.fromkeys(v.value_label for v in views if v.values is not None))
        items, right = _colorbar(right + 18, MARGIN + title_h, bottom - MARGIN - title_h, sources.colormap,
                                 lo, hi, label, theme)
        fig.items += items
    parts = [v.description for v in views] if n == 1 else \
        ["Left to right: " + "; ".join(v.description.rstrip(".") for v in views) + "."]
    if has_values:
        parts.append(f"Colour: {sources.colormap}, {how}.")
    return _with_caption(fig, request, ctx, parts, right, bottom, theme)


def _with_caption(fig, request, ctx, parts, right, bottom, theme) -> Figure:
    fig.caption = _caption(ctx, parts)
    width = right + MARGIN
    if request.caption:
        cw = width - 2 * MARGIN
        if request.aspect == "16:9":  # a slide has room beside a tall figure: use it, on the same canvas
            natural = max(_advance(line, 12.0) for line in fig.caption.splitlines()) + 4
            cw = max(cw, min(natural, (bottom + 120) * 16 / 9 - 2 * MARGIN))
            width = cw + 2 * MARGIN
        ch = _wrapped_height(fig.caption, 12.0, cw) + 2
        fig.items.append(Text((MARGIN, bottom + 12, cw, ch), fig.caption, 12.0, theme.muted, wrap=True,
                              align=int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)))
        bottom += 12 + ch
    return _finish(fig, width, bottom + MARGIN, request)


def _pick(indices, n: int, what: str) -> list[int]:
    if indices is None:
        return list(range(n))
    out = [int(i) + n if int(i) < 0 else int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        raise ExportError(f"{what} {bad[0] if bad else '(none)'} is not in 0..{n - 1}")
    return out


def _grid_figure(name, g: TileGrid, sources, request, ctx, theme) -> Figure:
    L, H, r, c = g.maps.shape
    rows, cols = _pick(request.rows, L, g.row_name), _pick(request.cols, H, g.col_name)
    maps = g.maps[np.ix_(rows, cols)]
    R, C = len(rows), len(cols)
    row_labels = [(g.row_labels or [f"L{i}" for i in range(L)])[i] for i in rows]
    col_labels = [(g.col_labels or [f"H{j}" for j in range(H)])[j] for j in cols]
    if request.tile_scale == "tile":
        norm, lo, hi = normalise_tiles(maps), 0.0, 1.0
        how = "each tile scaled to its own min–max (brightness is not comparable between tiles)"
        ticks, bar_label = [(0.0, "min"), (1.0, "max")], f"{g.value_label} (per tile)"
    elif request.tile_scale == "shared":
        lo, hi = finite_range([maps])
        norm = maps
        how = f"one scale shared by all tiles ({_fmt(lo)} to {_fmt(hi)})"
        ticks, bar_label = None, g.value_label
    else:
        raise ExportError(f"unknown tile scale {request.tile_scale!r} (use tile or shared)")
    rgb = map_values(sources.colormap, np.nan_to_num(norm, nan=lo), lo, hi)[..., :3]
    rgb[~np.isfinite(norm)] = 0
    ta = g.tile_aspect or c / r
    box_w, box_h = (1180.0, 600.0) if request.aspect == "16:9" else (960.0, 880.0)
    tw = min(box_w / C, box_h / R * ta, 150.0)
    gap = max(2.0, round(tw * 0.05))
    tw = min((box_w - (C - 1) * gap) / C, (box_h - (R - 1) * gap) / R * ta, 150.0)
    th = tw / ta
    fs = float(min(14, max(8, round(min(th, tw) * 0.4))))
    title_h = 26.0 if request.title else 0.0
    axis = fs + 8
    lab_w = max(_advance(t, fs) for t in row_labels) + 8
    gx, gy = MARGIN + axis + lab_w, MARGIN + title_h + axis + fs + 6
    gw, gh = C * tw + (C - 1) * gap, R * th + (R - 1) * gap
    fig = Figure("grid", 0, 0, theme)
    if request.title:
        fig.items.append(Text((MARGIN, MARGIN, gx + gw - MARGIN, title_h - 4), g.title, 15.0, theme.fg, bold=True))
    fig.items.append(Text((gx, MARGIN + title_h, gw, axis), g.col_name + "s", fs + 1, theme.fg,
                          align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    fig.items.append(Text((MARGIN, gy, axis, gh), g.row_name + "s", fs + 1, theme.fg, vertical=True,
                          align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    step_c = max(1, math.ceil((_advance(max(col_labels, key=len), fs) + 4) / (tw + gap)))
    step_r = max(1, math.ceil((fs + 2) / (th + gap)))
    for j in range(0, C, step_c):
        fig.items.append(Text((gx + j * (tw + gap) - gap, gy - fs - 6, tw + 2 * gap, fs + 4), col_labels[j], fs,
                              theme.fg, align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    for i in range(0, R, step_r):
        fig.items.append(Text((MARGIN + axis, gy + i * (th + gap), lab_w - 6, th), row_labels[i], fs, theme.fg,
                              align=int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)))
    sel = None
    if g.selected is not None and g.selected[0] in rows and (g.selected[1] is None or g.selected[1] in cols):
        sel = (rows.index(g.selected[0]), None if g.selected[1] is None else cols.index(g.selected[1]))
        if sel[1] is None and len(cols) != H:
            sel = None  # a whole-row outline over a subset of heads would mislead
    fig.items.append(Tiles((gx, gy), (tw, th), gap, rgb, sel))
    fig.panels.append({"name": name, "title": g.title, "rect": [gx, gy, gx + gw, gy + gh],
                       "origin": [gx, gy], "tile": [tw, th], "gap": gap,
                       "rows": rows, "cols": cols, "tile_scale": request.tile_scale, **g.meta})
    fig.scale = {"mode": "per-tile" if request.tile_scale == "tile" else "shared", "levels": [lo, hi],
                 "colormap": sources.colormap}
    right = gx + gw
    if request.colorbar:
        items, right = _colorbar(right + 18, gy, min(gh, max(120.0, gh)), sources.colormap, lo, hi,
                                 bar_label, theme, ticks)
        fig.items += items
    def span(name_, idx, labels):
        return f"{name_}s {labels[0]}–{labels[-1]}" if idx == list(range(idx[0], idx[-1] + 1)) \
            else f"{name_}s " + ", ".join(labels)
    parts = [g.description + f"; rows: {span(g.row_name, rows, row_labels)}, columns: "
             f"{span(g.col_name, cols, col_labels)}.", f"Colour: {sources.colormap}, {how}."]
    return _with_caption(fig, request, ctx, parts, right, gy + gh, theme)


# -- rendering -----------------------------------------------------------------------------------
def render_qimage(fig: Figure, request: ExportRequest) -> QtGui.QImage:
    s = fig.png_scale(request)
    w, h = fig.pixel_size(request)
    if w * h > 400_000_000:
        raise ExportError(f"{w} x {h} pixels is too large an image; choose a smaller width")
    img = QtGui.QImage(w, h, QtGui.QImage.Format.Format_RGB32)
    if img.isNull():
        raise ExportError(f"Not enough memory for a {w} x {h} image; choose a smaller width")
    img.fill(_qcolor(fig.theme.bg))
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
