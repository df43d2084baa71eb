"""Token geometry: the one mapping between the model's input tensor and the original image.

Every overlay is drawn through this module. A preprocessing is modelled as an axis-aligned affine
map `input = original * scale - offset` (resize, then crop or pad), which is exact for torchvision's
resize (align_corners=False: image edges map to image edges) followed by a crop or a padding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def resized_size(width: int, height: int, short: int, max_size: int | None = None) -> tuple[int, int]:
    """(w, h) after torchvision's `resize(img, [short])` (shorter side -> short), as torchvision computes it."""
    if width <= height:
        new_short, new_long = short, int(short * height / width)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return new_short, new_long
    new_short, new_long = short, int(short * width / height)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return new_long, new_short


@dataclass(frozen=True)
class InputTransform:
    """Affine map original-image pixels -> model-input pixels: `u = x * scale_x - offset_x`."""

    orig_w: int
    orig_h: int
    input_w: int
    input_h: int
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale_x - self.offset_x, y * self.scale_y - self.offset_y

    def to_original(self, u, v):
        return (u + self.offset_x) / self.scale_x, (v + self.offset_y) / self.scale_y

    def visible_rect(self) -> tuple[float, float, float, float]:
        """The part of the original image the model sees, (x0, y0, x1, y1) in original pixels."""
        x0, y0 = self.to_original(0.0, 0.0)
        x1, y1 = self.to_original(float(self.input_w), float(self.input_h))
        return max(0.0, x0), max(0.0, y0), min(float(self.orig_w), x1), min(float(self.orig_h), y1)

    def seen_fraction(self) -> float:
        """The share of the original image's area the model sees (1.0: all of it)."""
        x0, y0, x1, y1 = self.visible_rect()
        return max(0.0, x1 - x0) * max(0.0, y1 - y0) / float(self.orig_w * self.orig_h)

    def stretch(self) -> float:
        """How far out of shape the model's input is (1.0: proportions kept; 400: a strip squeezed)."""
        return max(self.scale_x / self.scale_y, self.scale_y / self.scale_x)

    def seen_note(self) -> str | None:
        """What the model saw, said plainly when it is little of the image or the image's shape was
        squeezed hard (a 20000x50 strip); None for an ordinary photo."""
        w, h, iw, ih = self.orig_w, self.orig_h, self.input_w, self.input_h
        frac = self.seen_fraction()
        if frac < 0.5:
            x0, y0, x1, y1 = self.visible_rect()
            return (f"The model saw only {x1 - x0:.0f}×{y1 - y0:.0f} px of this {w}×{h} image "
                    f"({frac:.2%}), resized and cropped to its {iw}×{ih} input; the rest is shaded.")
        stretch = self.stretch()
        if stretch > 3:
            return f"The model saw this {w}×{h} image squeezed to {iw}×{ih} ({stretch:.0f}× out of shape)."
        if max(w / h, h / w) > 8:
            return f"This {w}×{h} image is {max(w / h, h / w):.0f}× longer than wide: zoom in to see the map."
        return None

    @staticmethod
    def resize_center_crop(orig_w: int, orig_h: int, resize: int, crop: int) -> "InputTransform":
        """torchvision ImageClassification: shorter side -> `resize`, then center crop `crop` x `crop`."""
        rw, rh = resized_size(orig_w, orig_h, resize)
        # torchvision center_crop: top = int(round((h - crop) / 2)); pads symmetrically if too small.
        left = int(round((rw - crop) / 2.0))
        top = int(round((rh - crop) / 2.0))
        return InputTransform(orig_w, orig_h, crop, crop, rw / orig_w, rh / orig_h, float(left), float(top))

    @staticmethod
    def resize_exact(orig_w: int, orig_h: int, out_w: int, out_h: int) -> "InputTransform":
        """Plain resize to a fixed size (aspect not kept), as the demo models use."""
        return InputTransform(orig_w, orig_h, out_w, out_h, out_w / orig_w, out_h / orig_h)

    @staticmethod
    def resize_short(orig_w: int, orig_h: int, short: int, max_size: int | None,
                     pad_to: int = 1) -> "InputTransform":
        """DETR style: shorter side -> `short` (longer capped at `max_size`), padded bottom/right."""
        rw, rh = resized_size(orig_w, orig_h, short, max_size)
        iw, ih = math.ceil(rw / pad_to) * pad_to, math.ceil(rh / pad_to) * pad_to
        return InputTransform(orig_w, orig_h, iw, ih, rw / orig_w, rh / orig_h)


@dataclass(frozen=True)
class TokenGrid:
    """A rows x cols grid of tokens, each `cell_w` x `cell_h` model-input pixels, over the original image."""

    rows: int
    cols: int
    cell_w: float
    cell_h: float
    transform: InputTransform

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    def __len__(self) -> int:
        return self.rows * self.cols

    def rect(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Token (row, col) as (x0, y0, x1, y1) in original-image pixels (may extend past the image
        edge where the input was padded)."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(f"token ({row}, {col}) outside the {self.rows}x{self.cols} grid")
        x0, y0 = self.transform.to_original(col * self.cell_w, row * self.cell_h)
        x1, y1 = self.transform.to_original((col + 1) * self.cell_w, (row + 1) * self.cell_h)
        return float(x0), float(y0), float(x1), float(y1)

    def token_at(self, x: float, y: float) -> tuple[int, int] | None:
        """The token holding original pixel (x, y), or None if the model never saw that point
        (outside the image, or cropped away by the preprocessing)."""
        t = self.transform
        if not (0 <= x < t.orig_w and 0 <= y < t.orig_h):
            return None
        u, v = t.to_input(x, y)
        col, row = math.floor(u / self.cell_w), math.floor(v / self.cell_h)
        if 0 <= row < self.rows and 0 <= col < self.cols and 0 <= u < t.input_w and 0 <= v < t.input_h:
            return row, col
        return None

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """x edges (cols + 1) and y edges (rows + 1) of the grid, in original pixels."""
        xs, _ = self.transform.to_original(np.arange(self.cols + 1) * self.cell_w, 0.0)
        _, ys = self.transform.to_original(0.0, np.arange(self.rows + 1) * self.cell_h)
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)

    def extent(self) -> tuple[float, float, float, float]:
        """The whole grid as (x0, y0, x1, y1) in original pixels: where a [rows, cols] map is drawn."""
        xs, ys = self.edges()
        return float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1])

    def index(self, row: int, col: int) -> int:
        return row * self.cols + col

    def coarsen(self, factor: int) -> "TokenGrid":
        """The grid after merging `factor` x `factor` tokens (Swin's patch merging; odd sizes padded)."""
        return TokenGrid(math.ceil(self.rows / factor), math.ceil(self.cols / factor),
                         self.cell_w * factor, self.cell_h * factor, self.transform)
