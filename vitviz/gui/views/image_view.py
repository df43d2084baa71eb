"""The image with an attention heatmap, the token grid and the selection drawn over it.

Everything is placed in original-image pixel coordinates (y down), through the analysis' TokenGrid,
so linked views and exports agree with the core geometry.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from superqt.utils import qthrottled

from ...core.colormaps import OVERLAY_TEXT, bar_rgba, overlay_rgba
from ..colormaps import DEFAULT_COLORMAP, colormap
from .clicks import left_click_point
from .tile_plot import outline_item

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

FIT_PADDING = 0.02  # of the image's size, around it when fitted
ZOOM_OUT = 1.5  # zooming out stops at this many times the fitted view
BAR_AXIS_WIDTH = 76  # px, with the overlay label: fixed, so the heatmap does not move when tick labels change width


def compact_ticks(values, scale, spacing) -> list[str]:
    """Colorbar tick labels of at most 7 characters ("0.0012", "1.2e-05", "-3.5e+03")."""
    return [f"{v * scale:.3g}" for v in values]


class TitleItem(pg.LabelItem):
    """A view's title that never makes the view wider than its widget (a long title in a narrow
    window pushed the colorbar out of sight): no minimum width; ImageView elides the text."""

    def updateMin(self) -> None:  # noqa: N802 (pyqtgraph's name)
        super().updateMin()
        self.setMinimumWidth(0)
        h = self._sizeHint[QtCore.Qt.SizeHint.MinimumSize][1]
        self._sizeHint[QtCore.Qt.SizeHint.MinimumSize] = (0, h)
        self.updateGeometry()


class ImageView(pg.GraphicsLayoutWidget):
    """One image view. Signals carry original-image pixel coordinates."""

    clicked = QtCore.Signal(float, float)
    keyMoved = QtCore.Signal(int, int)  # arrow keys: (d_row, d_col)
    hovered = QtCore.Signal(float, float)  # throttled to one per frame
    title = None  # (class default: Qt may resize the widget while __init__ runs)

    def __init__(self, title: str = "", parent=None):
        super().__init__(parent)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setBackground("#202124")
        self._title_text = title
        self.title = TitleItem(title, color="#e8eaed")
        self.addItem(self.title, row=0, col=0, colspan=2)
        self.vb: pg.ViewBox = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True,
                                              enableMenu=False)
        self.base = pg.ImageItem()
        self.overlay = pg.ImageItem()
        self.overlay.setZValue(10)
        self.crop_shade = QtWidgets.QGraphicsPathItem()
        self.crop_shade.setBrush(QtGui.QBrush(QtGui.QColor(0, 0, 0, 150)))
        self.crop_shade.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.crop_shade.setZValue(15)
        self.grid_lines = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen((255, 255, 255, 90), width=1))
        self.grid_lines.setZValue(20)
        self.selection = outline_item(z=30)
        self.selection.setVisible(False)
        for item in (self.base, self.overlay, self.crop_shade, self.grid_lines, self.selection):
            self.vb.addItem(item)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(DEFAULT_COLORMAP), width=14,
                                        rounding=1e-6,
                                        interactive=False, colorMapMenu=False)
        self.colorbar.axis.setWidth(BAR_AXIS_WIDTH)
        self.colorbar.axis.tickStrings = compact_ticks  # fits the fixed width at any value range
        self.colorbar.axis.enableAutoSIPrefix(False)  # a label would otherwise read "(x0.001)"
        self.addItem(self.colorbar, row=1, col=1)
        self._bar_key = (DEFAULT_COLORMAP, "blend", 1.0)  # what the bar shows: colormap, overlay, opacity
        self.colorbar.axis.setLabel(OVERLAY_TEXT["blend"], color="#9aa0a6")
        self.scene().sigMouseClicked.connect(self._on_scene_click)
        self.scene().sigMouseMoved.connect(self._on_scene_move)
        self._image_size: tuple[int, int] | None = None
        self._photo: np.ndarray | None = None  # the photo last shown: another one re-fits the view
        self._aspect = 1.0  # screen px per x unit / per y unit: 1 for the photo, the model's squeeze in M
        self.vb.sigResized.connect(self._update_limits)

    # -- content -------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray, rect: tuple[float, float, float, float] | None = None) -> None:
        """rgb (H, W, 3) uint8, placed at rect (x0, y0, x1, y1), by default (0, 0, W, H)."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = rect or (0, 0, w, h)
        self.base.setImage(rgb, levels=(0, 255))
        self.base.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))  # after setImage: rect is relative
        if rect is None:
            # another photo re-fits; the same one (a new model, the same image) keeps the zoom
            same = self._photo is not None and self._photo.shape == rgb.shape and (
                self._photo is rgb or np.array_equal(self._photo, rgb))
            self._photo, self._image_size = rgb, (w, h)
            if not same:
                self.fit()

    def fit(self) -> None:
        """Show the whole photo (F, View > Fit view, a double-click beside the image)."""
        if self._image_size is None:
            return
        w, h = self._image_size
        # an explicit rect: auto-range would also fit the previous image's overlay and grid lines
        self.vb.setRange(QtCore.QRectF(0, 0, w, h), padding=FIT_PADDING)
        self._update_limits()

    def set_aspect(self, ratio: float) -> None:
        """Draw x units `ratio` times as wide on screen as y units (1: the photo's own shape). Showing
        what the model sees, a squeezed image is stretched as its input was, so its map is not a line."""
        if abs(ratio - self._aspect) > 1e-9 * max(ratio, self._aspect):
            self._aspect = ratio
            self.vb.setAspectLocked(True, ratio=ratio)
            self.fit()

    def show_rect(self, rect: tuple[float, float, float, float]) -> None:
        """Zoom to (x0, y0, x1, y1), original pixels."""
        x0, y0, x1, y1 = rect
        self.vb.setRange(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0), padding=FIT_PADDING)

    def _update_limits(self) -> None:
        """Zooming out stops at ZOOM_OUT times the fitted view (for the view box's current size)."""
        if self._image_size is None:
            return
        w, h = self._image_size
        pw, ph = max(1.0, self.vb.width()), max(1.0, self.vb.height())
        r = self._aspect
        sy = min(pw / (r * w), ph / h) / (1 + 2 * FIT_PADDING)  # screen px per image y unit, fitted
        self.vb.setLimits(maxXRange=ZOOM_OUT * pw / (r * sy), maxYRange=ZOOM_OUT * ph / sy)

    def set_map(self, values: np.ndarray | None, extent: tuple[float, float, float, float] | None = None,
                cmap: str = DEFAULT_COLORMAP, levels: tuple[float, float] | None = None,
                opacity: float = 0.6, overlay: str = "blend") -> None:
        """Draw a [rows, cols] map over `extent` (x0, y0, x1, y1), one cell per token, nearest-neighbour
        (a token's value is never smeared into its neighbours)."""
        if values is None:
            self.overlay.clear()
            return
        finite = values[np.isfinite(values)]
        lo, hi = levels if levels is not None else (
            (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1e-6
        self.overlay.setImage(overlay_rgba(values, cmap, lo, hi, opacity, overlay), levels=(0, 255))
        x0, y0, x1, y1 = extent
        self.overlay.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        key = (cmap, overlay, opacity if overlay == "alpha" else 1.0)
        if key != self._bar_key:  # setColorMap rebuilds the bar: only when what it shows changed
            lut = bar_rgba(*key)
            self.colorbar.setColorMap(colormap(cmap) if overlay == "blend" else
                                      pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut))
            self.colorbar.axis.setLabel(OVERLAY_TEXT[overlay], color="#9aa0a6")
            self._bar_key = key
        self.colorbar.setLevels((lo, hi))
        self.levels = (lo, hi)

    def set_grid(self, xs: np.ndarray | None, ys: np.ndarray | None, visible: bool = True) -> None:
        """Grid lines at x edges `xs` and y edges `ys` (original pixels)."""
        if xs is None or not visible:
            self.grid_lines.setData([], [])
            return
        y0, y1, x0, x1 = ys[0], ys[-1], xs[0], xs[-1]
        vx = np.repeat(xs, 2)
        vy = np.tile([y0, y1], len(xs))
        hx = np.tile([x0, x1], len(ys))
        hy = np.repeat(ys, 2)
        self.grid_lines.setData(np.concatenate([vx, hx]), np.concatenate([vy, hy]))

    def set_crop_shade(self, image_size: tuple[int, int], visible_rect) -> None:
        """Darken the parts of the image the model never saw (cropped away by its preprocessing)."""
        w, h = image_size
        path = QtGui.QPainterPath()
        path.setFillRule(QtCore.Qt.FillRule.OddEvenFill)
        path.addRect(QtCore.QRectF(0, 0, w, h))
        x0, y0, x1, y1 = visible_rect
        path.addRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.crop_shade.setPath(path)

    def set_selection(self, rect: tuple[float, float, float, float] | None) -> None:
        if rect is None:
            self.selection.setVisible(False)
            return
        x0, y0, x1, y1 = rect
        self.selection.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.selection.setVisible(True)

    def set_title(self, text: str) -> None:
        self._title_text = text
        self._show_title()

    def title_text(self) -> str:
        """The whole title (the one shown may be elided to fit)."""
        return self._title_text

    def _show_title(self) -> None:
        if self.title is None:
            return
        fm = QtGui.QFontMetrics(self.font())
        self.title.setText(fm.elidedText(self._title_text, QtCore.Qt.TextElideMode.ElideRight,
                                         max(40, self.width() - 24)))
        self.title.setToolTip(self._title_text)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._show_title()

    def link_to(self, other: "ImageView") -> None:
        self.vb.setXLink(other.vb)
        self.vb.setYLink(other.vb)

    def clear_content(self) -> None:
        self.overlay.clear()
        self.grid_lines.setData([], [])
        self.selection.setVisible(False)

    # -- input ---------------------------------------------------------------------------------
    def _on_scene_click(self, event) -> None:
        if event.double() and event.button() == QtCore.Qt.MouseButton.LeftButton:
            p = self.vb.mapSceneToView(event.scenePos())
            if self._image_size is not None and not (0 <= p.x() < self._image_size[0]
                                                     and 0 <= p.y() < self._image_size[1]):
                self.fit()  # a double-click on empty space (on the image it is two clicks)
            return
        p = left_click_point(self.vb, event)
        if p is None:
            return
        self.setFocus()
        self.clicked.emit(p.x(), p.y())

    def _on_scene_move(self, pos) -> None:
        if self.vb.sceneBoundingRect().contains(pos):
            p = self.vb.mapSceneToView(pos)
            self._emit_hover(p.x(), p.y())

    @qthrottled(timeout=16, leading=True)
    def _emit_hover(self, x: float, y: float) -> None:
        self.hovered.emit(x, y)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        moves = {QtCore.Qt.Key.Key_Left: (0, -1), QtCore.Qt.Key.Key_Right: (0, 1),
                 QtCore.Qt.Key.Key_Up: (-1, 0), QtCore.Qt.Key.Key_Down: (1, 0)}
        if event.key() in moves:
            self.keyMoved.emit(*moves[event.key()])
            event.accept()
            return
        super().keyPressEvent(event)

    def view_to_widget(self, x: float, y: float) -> QtCore.QPoint:
        """Original-image pixel -> widget pixel (for tests and synthetic clicks)."""
        scene = self.vb.mapViewToScene(QtCore.QPointF(x, y))
        return self.mapFromScene(scene)
