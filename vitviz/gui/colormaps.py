"""Colormaps for the pyqtgraph views: built from vitviz.core.colormaps' tables (one source for the
screen and for exports)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg

from ..core.colormaps import COLORMAPS, DEFAULT_COLORMAP, lookup_table, map_values

__all__ = ["COLORMAPS", "DEFAULT_COLORMAP", "colormap", "lookup_table", "map_values"]


@lru_cache(maxsize=None)
def colormap(name: str) -> pg.ColorMap:
    lut = lookup_table(name)
    return pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut, name=name)
