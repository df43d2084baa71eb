"""Swin window geometry drawn over an ImageView: window partitions (regular / shifted), the nine
regions the shifted-window mask keeps apart, and the pieces of one highlighted window.

Everything is given per token of a stage grid ([rows, cols] window ids or region labels) and drawn
in original-image pixels through that grid's edges (TokenGrid.edges()), like the heatmap under it.
Lines are cosmetic (constant screen width) with a dark halo, so they read on any image and on a
projector.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1) original-image pixels

REGULAR_COLOR = "#00e5ff"  # cyan: W-MSA (regular) windows
SHIFTED_COLOR = "#ff9f0a"  # orange: SW-MSA (shifted) windows
WINDOW_COLOR = "#ffffff"  # the selected token's window, every piece of it
HALO_COLOR = (0, 0, 0, 200)
# Regions 1..8 of the shifted-window mask (0, the bulk of the map, stays clear): distinct hues,
# each with a hatch that differs from the regions it shares windows with (1|2, 3|6, 4|5|7|8) so
# they differ without relying on colour; no horizontal/vertical hatches, which read as grid lines.
REGION_COLORS = ("#ffffff", "#ff4fa3", "#7cff4f", "#4fa3ff", "#ffe14f", "#c44fff", "#4fffe1",
                 "#ff8a4f", "#e6e6e6")
_B, _F = QtCore.Qt.BrushStyle.BDiagPattern, QtCore.Qt.BrushStyle.FDiagPattern
REGION_PATTERNS = (QtCore.Qt.BrushStyle.NoBrush, _B, _F, _B, QtCore.Qt.BrushStyle.DiagCrossPattern, _B, _F, _F,
                   QtCore.Qt.BrushStyle.Dense6Pattern)

Z_REGIONS, Z_PARTITION, Z_WINDOW = 12, 22, 25  # heatmap 10, crop shade 15, grid 20, selection 30


# -- geometry (pure numpy) ----------------------------------------------------------------------
def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, stop) runs of True in a 1-d bool array."""
    d = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def partition_segments(part: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(n, 4) segments x0, y0, x1, y1 outlining every window of a [rows, cols] id map: the lines
    between neighbouring tokens of different windows, merged along their length, plus the border."""
    segs = []
    for j in np.flatnonzero((part[:, 1:] != part[:, :-1]).any(axis=0)):
        for r0, r1 in runs(part[:, j + 1] != part[:, j]):
            segs.append((xs[j + 1], ys[r0], xs[j + 1], ys[r1]))
    for i in np.flatnonzero((part[1:] != part[:-1]).any(axis=1)):
        for c0, c1 in runs(part[i + 1] != part[i]):
            segs.append((xs[c0], ys[i + 1], xs[c1], ys[i + 1]))
    x0, y0, x1, y1 = xs[0], ys[0], xs[-1], ys[-1]
    segs += [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)]
    return np.asarray(segs, dtype=np.float64)


def token_rect(rect, xs: np.ndarray, ys: np.ndarray) -> Rect:
    """Half-open token rectangle (row0, col0, row1, col1) -> original pixels."""
    r0, c0, r1, c1 = rect
    return float(xs[c0]), float(ys[r0]), float(xs[c1]), float(ys[r1])


def region_rects(labels: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> list[tuple[int, Rect]]:
    """(label, rect) for every rectangle of constant label in a [rows, cols] region map. The mask's
    regions are products of row bands and column bands, so each label is one or a few rectangles."""
    out = []
    for lab in np.unique(labels).tolist():
        m = labels == lab
        for r0, r1 in runs(m.any(axis=1)):
            for c0, c1 in runs(m[r0:r1].all(axis=0)):
                out.append((int(lab), token_rect((r0, c0, r1, c1), xs, ys)))
    return out


def window_marks(analysis, stage: int, block: int, mode: str, regions: bool = True):
    """What to draw for a block: ([(segments, colour)] partitions, [(label, rect)] mask regions).
    mode: "block" (its own partition), "regular", "shifted" (the stage's), "both" or "none". Regions
    come with a shifted partition; where torchvision dropped the shift there are none."""
    a = analysis
    xs, ys = a.stage_grid(stage).edges()
    own = a.block(stage, block)
    shifted_blocks = [b for b in a.stage_blocks(stage) if b.shifted]
    wanted = {"block": [None], "regular": [False], "shifted": [True], "both": [False, True]}.get(mode, [])
    parts, any_shifted = [], False
    for w in wanted:
        is_shifted = own.shifted if w is None else bool(w and shifted_blocks)
        any_shifted |= is_shifted
        parts.append((partition_segments(a.window_partition(stage, block, w), xs, ys),
                      SHIFTED_COLOR if is_shifted else REGULAR_COLOR))
    labels = []
    if any_shifted and regions:
        src = own if own.shifted else shifted_blocks[0]
        labels = region_rects(a.mask_regions(stage, src.block), xs, ys)
    return parts, labels


def circular_span(used: np.ndarray) -> np.ndarray:
    """Indices of the shortest circular run covering every True of `used`: the complement of its
    longest circular gap. A window that wraps around the border comes back joined, in the model's
    (rolled) order; one that does not is its plain bounding range."""
    n = len(used)
    idx = np.flatnonzero(used)
    if len(idx) in (0, n):
        return np.arange(n)
    gaps = np.diff(np.concatenate([idx, [idx[0] + n]]))  # gap after each used index, circularly
    k = len(gaps) - 1 if gaps[-1] == gaps.max() else int(np.argmax(gaps))  # prefer not wrapping
    start = idx[(k + 1) % len(idx)]
    return (start + np.arange(n - gaps[k] + 1)) % n


def crop_to_window(maps: np.ndarray) -> np.ndarray:
    """(blocks, heads, rows, cols), NaN outside each block's window -> only the rows and columns the
    windows use, so heads x blocks tiles show the windows rather than a mostly black map."""
    finite = np.isfinite(maps).any(axis=(0, 1))
    return maps[..., circular_span(finite.any(axis=1)), :][..., circular_span(finite.any(axis=0))]


# -- drawing -----------------------------------------------------------------------------------
def _pen(color, width: float, style=QtCore.Qt.PenStyle.SolidLine) -> QtGui.QPen:
    pen = pg.mkPen(color, width=width, style=style)
    pen.setCosmetic(True)
    return pen


def _segments_xy(segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(segs) == 0:
        return np.zeros(0), np.zeros(0)
    return segs[:, [0, 2]].reshape(-1), segs[:, [1, 3]].reshape(-1)


@dataclass
class _Lines:
    halo: pg.PlotCurveItem
    line: pg.PlotCurveItem

    def set(self, segs: np.ndarray | None, color=None, dashed: bool = False, width: float = 2.5) -> None:
        if segs is None or len(segs) == 0:
            self.halo.setData([], [])
            self.line.setData([], [])
            return
        x, y = _segments_xy(segs)
        style = QtCore.Qt.PenStyle.DashLine if dashed else QtCore.Qt.PenStyle.SolidLine
        self.halo.setPen(_pen(HALO_COLOR, width + 2.5, style))
        self.line.setPen(_pen(color, width, style))
        self.halo.setData(x, y)
        self.line.setData(x, y)


class WindowsOverlay:
    """The Swin window items of one ImageView's ViewBox. Set data with `set_partitions`,
    `set_regions`, `set_window`; each call replaces what it drew before."""

    def __init__(self, vb: pg.ViewBox):
        self.vb = vb
        self.partitions: list[_Lines] = []
        for z in (0.0, 0.5):  # a primary and a comparison partition ("both")
            lines = _Lines(pg.PlotCurveItem(connect="pairs"), pg.PlotCurveItem(connect="pairs"))
            lines.halo.setZValue(Z_PARTITION + z)
            lines.line.setZValue(Z_PARTITION + z + 0.1)
            vb.addItem(lines.halo)
            vb.addItem(lines.line)
            self.partitions.append(lines)
        self.region_items: list[QtWidgets.QGraphicsItem] = []
        self.region_labels: list[pg.TextItem] = []
        self.window_items: list[QtWidgets.QGraphicsRectItem] = []
        self.window_pieces: list[Rect] = []  # what is outlined now (tests, exports)
        self.regions: list[tuple[int, Rect]] = []

    def set_partitions(self, *partitions) -> None:
        """Each partition: (segments, color) or (segments, color, dashed). Up to two, later on top."""
        parts = [p for p in partitions if p is not None][: len(self.partitions)]
        for lines, p in zip(self.partitions, parts + [None] * (len(self.partitions) - len(parts))):
            lines.set(*p) if p is not None else lines.set(None)

    def set_regions(self, regions: list[tuple[int, Rect]], labels: bool = True) -> None:
        """Hatched rectangles per mask region (label 0, the bulk, left clear), each with its number."""
        for item in self.region_items + self.region_labels:
            self.vb.removeItem(item)
        self.region_items, self.region_labels, self.regions = [], [], list(regions)
        for lab, (x0, y0, x1, y1) in regions:
            color = QtGui.QColor(REGION_COLORS[lab % len(REGION_COLORS)])
            rect = QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)
            items = []
            if lab:  # hatch only: the heatmap under it stays readable
                hatch = QtWidgets.QGraphicsRectItem(rect)
                line = QtGui.QColor(color)
                line.setAlpha(150)
                hatch.setBrush(QtGui.QBrush(line, REGION_PATTERNS[lab % len(REGION_PATTERNS)]))
                edge = QtGui.QColor(color)
                edge.setAlpha(220)
                hatch.setPen(_pen(edge, 1.5, QtCore.Qt.PenStyle.DashLine))
                items = [hatch]
            for it in items:
                it.setZValue(Z_REGIONS)
                self.vb.addItem(it)
            self.region_items += items
            if labels:
                # region 0 is the bulk, where the token's window and its heatmap usually are:
                # its number goes in its top-left corner, the border strips' in their centres
                box = QtGui.QColor(color)
                box.setAlpha(230)
                text = pg.TextItem(html=f"<b>{lab}</b>", anchor=(0, 0) if lab == 0 else (0.5, 0.5),
                                   fill=pg.mkBrush(box), border=pg.mkPen(0, 0, 0, 200))
                text.setColor("k")
                text.setPos(*((x0, y0) if lab == 0 else ((x0 + x1) / 2, (y0 + y1) / 2)))
                text.setZValue(Z_REGIONS + 0.5)
                self.vb.addItem(text)
                self.region_labels.append(text)

    def set_window(self, pieces: list[Rect]) -> None:
        """Outline every piece of one window (a shifted window that wraps has up to four)."""
        while len(self.window_items) < 2 * len(pieces):
            for width, color, z in ((7.0, HALO_COLOR, Z_WINDOW), (3.5, WINDOW_COLOR, Z_WINDOW + 0.1)):
                item = QtWidgets.QGraphicsRectItem()
                item.setPen(_pen(color, width))
                item.setZValue(z)
                self.vb.addItem(item)
                self.window_items.append(item)
        for k, item in enumerate(self.window_items):
            if k // 2 < len(pieces):
                x0, y0, x1, y1 = pieces[k // 2]
                item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
                item.setVisible(True)
            else:
                item.setVisible(False)
        self.window_pieces = list(pieces)

    def clear(self) -> None:
        self.set_partitions()
        self.set_regions([])
        self.set_window([])
