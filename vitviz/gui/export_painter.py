"""The drawables of an exported figure and the one QPainter routine that draws them, the same into a
QImage (PNG, clipboard), a QSvgGenerator (SVG) or a QPdfWriter (PDF).

Figure units are 1/96 inch. Lines, rectangles and text are vector in SVG/PDF. The photo is embedded
at its full resolution; heatmaps are embedded nearest-neighbour upsampled (and drawn without
smoothing in PNGs), so a token is a crisp block in every viewer. SVG has no clipping in Qt's
generator, so everything is cropped to the shown region here, geometrically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PySide6 import QtCore, QtGui

from ..core.colormaps import bar_rgba, overlay_rgba
from ..core.figures import ExportError, MapView
from .export_request import ExportRequest

FONT = "DejaVu Sans"
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


def qcolor(c) -> QtGui.QColor:
    return QtGui.QColor(*[int(v) for v in c])


def label_text_color(fill) -> QtGui.QColor:
    """Black on light fills, white on dark ones (perceived luminance, as the views' box labels)."""
    lum = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return QtGui.QColor(0, 0, 0) if lum > 140 else QtGui.QColor(255, 255, 255)


def font(size: float, bold: bool = False) -> QtGui.QFont:
    f = QtGui.QFont(FONT)
    f.setPixelSize(max(1, int(round(size))))
    f.setBold(bold)
    f.setHintingPreference(QtGui.QFont.HintingPreference.PreferNoHinting)  # same metrics on any device
    return f


def text_width(text: str, size: float, bold: bool = False) -> float:
    return QtGui.QFontMetricsF(font(size, bold)).horizontalAdvance(text)


def elide(text: str, width: float, size: float, bold: bool = False) -> str:
    """`text` elided with "…" to fit `width` (titles over narrow panels)."""
    fm = QtGui.QFontMetricsF(font(size, bold))
    return fm.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, width)


def wrapped_height(text: str, size: float, width: float) -> float:
    fm = QtGui.QFontMetricsF(font(size))
    r = fm.boundingRect(QtCore.QRectF(0, 0, width, 1e6), int(QtCore.Qt.TextFlag.TextWordWrap), text)
    return r.height()


def qimage(arr: np.ndarray) -> QtGui.QImage:
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    fmt = QtGui.QImage.Format.Format_RGBA8888 if arr.shape[2] == 4 else QtGui.QImage.Format.Format_RGB888
    return QtGui.QImage(arr.data, w, h, arr.strides[0], fmt).copy()


def _upsample(arr: np.ndarray, k: int) -> np.ndarray:
    return arr if k <= 1 else np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def heat_rgba(values: np.ndarray, cmap: str, lo: float, hi: float, opacity: float = 1.0,
              overlay: str = "blend") -> np.ndarray:
    """[rows, cols] -> RGBA exactly as the views draw it, the opacity baked into the pixels (SVG and
    PDF viewers need no group opacity)."""
    return overlay_rgba(values, cmap, lo, hi, opacity, overlay)



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
        p.setFont(font(self.size, self.bold))
        p.setPen(qcolor(self.color))
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
        p.fillRect(QtCore.QRectF(x, y, w, h), qcolor(self.empty))
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
                                          (iy1 - iy0) / ky * sy), qimage(v.image[iy0:iy1, ix0:ix1]))
        if v.values is not None and v.extent is not None:
            self._paint_values(p, vector, X, Y)
        for shape in v.shapes:
            self._paint_shape(p, shape, X, Y)
        self._paint_labels(p, v.shapes, X, Y)
        p.restore()

    def _paint_values(self, p, vector, X, Y) -> None:
        v, R = self.view, self.region
        rgba = heat_rgba(v.values, self.cmap, *self.levels, v.opacity, v.overlay)
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
        p.drawImage(QtCore.QRectF(tx0, ty0, tx1 - tx0, ty1 - ty0), qimage(sub[py0:py1, px0:px1]))

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
            p.fillPath(path, qcolor(shape.fill or shape.color))
            return
        pen = QtGui.QPen(qcolor(shape.color), shape.width)
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
                                     QtCore.QPointF(X(inside[2]), Y(inside[3]))), qcolor(shape.fill))
        if R[0] <= x0 and R[1] <= y0 and x1 <= R[2] and y1 <= R[3]:
            p.setPen(pen)
            p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
            p.drawRect(QtCore.QRectF(QtCore.QPointF(X(x0), Y(y0)), QtCore.QPointF(X(x1), Y(y1))))
        else:  # partly outside: only the edges inside the region, no false border
            edges = [(x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)]
            segs = [s for s in (_clip_segment(*e, R) for e in edges) if s]
            p.setPen(pen)
            p.drawLines([QtCore.QLineF(X(a), Y(b), X(c), Y(d)) for a, b, c, d in segs])

    def _paint_labels(self, p, shapes, X, Y) -> None:
        """The rectangles' labels over everything, kept inside the panel and placed apart
        (vitviz.core.detr.marks.place_labels): the shape drawn last (on top: DETR's selected box,
        then the best) chooses its spot first, and is drawn last."""
        from ..core.detr.marks import place_labels

        size = 11.0
        shown = [(s, _intersect(tuple(s.coords), self.region)) for s in reversed(shapes)
                 if s.kind == "rect" and s.label]
        shown = [(s, r) for s, r in shown if r is not None]
        if not shown:
            return
        px, py, pw, ph = self.rect
        sizes = [(text_width(s.label, size) + 6, size + 6) for s, _ in shown]
        spots = place_labels([(X(r[0]), Y(r[1]), X(r[2]), Y(r[3])) for _, r in shown], sizes,
                             (px, py, px + pw, py + ph), tol=1.0, inside_first=True)
        p.setFont(font(size))
        for (shape, _), (bx, by), (tw, th) in reversed(list(zip(shown, spots, sizes))):
            box = QtCore.QRectF(bx, by, tw, th)
            p.fillRect(box, qcolor(shape.color))
            p.setPen(label_text_color(shape.color))
            p.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignCenter), shape.label)


@dataclass
class Tiles:
    origin: tuple  # x, y of tile (0, 0)
    tile: tuple  # w, h
    gap: float
    rgba: np.ndarray  # (R, C, r, c, 4) uint8; alpha 0 (the background shows) where no value
    selected: tuple | None  # (row, col | None) in shown indices

    def rect(self, i: int, j: int) -> QtCore.QRectF:
        (x, y), (w, h) = self.origin, self.tile
        return QtCore.QRectF(x + j * (w + self.gap), y + i * (h + self.gap), w, h)

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        R, C, r, c, _ = self.rgba.shape
        k = max(1, math.ceil(VECTOR_TILE_PX / max(r, c))) if vector else 1
        p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)
        for i in range(R):
            for j in range(C):
                p.drawImage(self.rect(i, j), qimage(_upsample(self.rgba[i, j], k)))
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
    overlay: str = "blend"
    opacity: float = 1.0
    bg: tuple = (255, 255, 255)  # what an "alpha" bar's colour is laid over

    def paint(self, p: QtGui.QPainter, vector: bool) -> None:
        x, y, w, h = self.rect
        rgba = bar_rgba(self.cmap, self.overlay, self.opacity)[::-1].astype(np.float64)  # top = high
        a = rgba[:, 3:] / 255.0
        lut = (rgba[:, :3] * a + np.asarray(self.bg[:3], np.float64) * (1 - a) + 0.5).astype(np.uint8)
        p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawImage(QtCore.QRectF(x, y, w, h), qimage(np.repeat(lut[:, None, :], 4 if vector else 1, axis=1)))
        pen = QtGui.QPen(qcolor(self.fg), 0.75)
        p.setPen(pen)
        p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        p.drawRect(QtCore.QRectF(x, y, w, h))
        p.setFont(font(self.size))
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
        p.fillRect(QtCore.QRectF(0, 0, self.width, self.height), qcolor(self.theme.bg))
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        for item in self.items:
            item.paint(p, vector)

