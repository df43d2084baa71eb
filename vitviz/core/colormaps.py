"""Colormaps for attention overlays, Qt-free (cmap): the same tables on screen and in exports.

cmap holds every map pyqtgraph ships (viridis's table is byte-identical to pyqtgraph's), so headless
exports need no pyqtgraph, which would import QtWidgets."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

COLORMAPS = ("viridis", "cividis", "magma", "inferno", "plasma", "turbo", "CET-L1")
DEFAULT_COLORMAP = "viridis"
# How a map is laid over the photo. "blend": the colormap's colour at the opacity (on a colourful
# photo the mix shows colours that are not on the bar). "alpha": one colour (the colormap's top)
# whose opacity is the value: what is read off the bar is how much colour, whatever the photo.
OVERLAYS = ("blend", "alpha")
OVERLAY_TEXT = {"blend": "colours blended", "alpha": "value = opacity"}


@lru_cache(maxsize=None)
def lookup_table(name: str, n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA table, the one handed to ImageItem.setLookupTable."""
    from cmap import Colormap

    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    lut = (np.asarray(Colormap(name).lut(n), np.float64) * 255 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def map_values(name: str, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> (..., 4) uint8 RGBA exactly as an ImageItem with levels (lo, hi) and this LUT draws
    them (used by exports and by tests that check rendered pixels)."""
    lut = lookup_table(name)
    scale = (len(lut) - 1) / (hi - lo) if hi > lo else 0.0
    idx = np.clip(np.floor((np.asarray(values, np.float64) - lo) * scale + 0.5), 0, len(lut) - 1)
    return lut[idx.astype(int)]


def overlay_rgba(values: np.ndarray, name: str, lo: float, hi: float, opacity: float = 1.0,
                 overlay: str = "blend") -> np.ndarray:
    """[rows, cols] -> RGBA as the views and exports draw a map over the photo, the opacity baked
    into alpha; NaN (no attention defined there) is transparent."""
    if overlay not in OVERLAYS:
        raise ValueError(f"unknown overlay {overlay!r}; choose one of {', '.join(OVERLAYS)}")
    v = np.asarray(values, np.float64)
    rgba = map_values(name, np.nan_to_num(v, nan=lo), lo, hi).copy()
    if overlay == "alpha":
        rgba[..., :3] = lookup_table(name)[-1, :3]
        t = np.clip((np.nan_to_num(v, nan=lo) - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(v.shape)
        rgba[..., 3] = np.floor(255 * float(opacity) * t + 0.5).astype(np.uint8)
    else:
        rgba[..., 3] = int(round(255 * float(opacity)))
    rgba[~np.isfinite(v)] = 0
    return rgba


def bar_rgba(name: str, overlay: str = "blend", opacity: float = 1.0, n: int = 256) -> np.ndarray:
    """(n, 4) RGBA of a colorbar from low to high: the colormap, or in "alpha" mode its top colour
    at the opacity each value gets."""
    if overlay == "alpha":
        return overlay_rgba(np.linspace(0.0, 1.0, n), name, 0.0, 1.0, opacity, "alpha")
    return np.array(lookup_table(name, n))
