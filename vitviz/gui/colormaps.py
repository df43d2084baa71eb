"""Colormaps for attention overlays: pyqtgraph's perceptually uniform maps, colorblind-safe first."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg

COLORMAPS = ("viridis", "cividis", "magma", "inferno", "plasma", "turbo", "CET-L1")
DEFAULT_COLORMAP = "viridis"


@lru_cache(maxsize=None)
def colormap(name: str) -> pg.ColorMap:
    return pg.colormap.get(name)


@lru_cache(maxsize=None)
def lookup_table(name: str, n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA table, the one handed to ImageItem.setLookupTable."""
    return colormap(name).getLookupTable(0.0, 1.0, n, alpha=True)


def map_values(name: str, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> (..., 4) uint8 RGBA exactly as an ImageItem with levels (lo, hi) and this LUT draws
    them (used by exports and by tests that check rendered pixels)."""
    lut = lookup_table(name)
    scale = (len(lut) - 1) / (hi - lo) if hi > lo else 0.0
    idx = np.clip(np.floor((np.asarray(values, np.float64) - lo) * scale + 0.5), 0, len(lut) - 1)
    return lut[idx.astype(int)]
