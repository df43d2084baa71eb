"""Colormaps for attention overlays, Qt-free (cmap): the same tables on screen and in exports.

cmap holds every map pyqtgraph ships (viridis's table is byte-identical to pyqtgraph's), so headless
exports need no pyqtgraph, which would import QtWidgets."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

COLORMAPS = ("viridis", "cividis", "magma", "inferno", "plasma", "turbo", "CET-L1")
DEFAULT_COLORMAP = "viridis"


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
