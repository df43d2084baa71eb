"""measure_many(): the declared analyses (vitviz.core.analysis.tables) over many images.

    measure_many(paths, ["attention_distance"], model="demo_vit").means["attention_distance"]

Each image's attention is reduced to these results and dropped (vitviz.core.batch.analyze_many
with a `keep` function), so memory does not grow with the count: the running sums of every result
and, for the small per-image ones ((layer, head) tables, DETR query boxes), each image's values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .tables import get_measure


@dataclass
class FolderMeasures:
    """Means over images (element-wise), per-image (layers, heads) tables, what failed."""

    model_name: str = ""
    weights: str = ""
    params: dict = field(default_factory=dict)  # name -> resolved parameters
    sources: list = field(default_factory=list)
    means: dict = field(default_factory=dict)  # name -> ndarray
    per_image: dict = field(default_factory=dict)  # name -> list of ndarray (keeps_per_image only)
    failures: list = field(default_factory=list)  # (source, error)
    cancelled: bool = False


def measure_many(images, names, model=None, weights=None, *, params: dict | None = None,
                 device: str | None = "cpu", batch_size: int = 8, progress=None, cancel=None,
                 on_error: str = "yield", **kwargs) -> FolderMeasures:
    """Every analysis in `names` on every image, streaming; means over the images that were read.
    params: {name: {param: value}}. Results of different shapes (images giving different grids)
    cannot be averaged: a ValueError says so."""
    from ..batch import ImageFailure, analyze_many

    decl = [get_measure(n) for n in names]
    params = params or {}
    resolved = {m.name: m.resolve(params.get(m.name)) for m in decl}
    out = FolderMeasures(params=resolved)
    sums: dict[str, np.ndarray] = {}

    def keep(a):
        out.model_name, out.weights = a.model_name, a.weights
        return {m.name: m(a, **resolved[m.name]) for m in decl}

    for r in analyze_many(images, model, weights, device, batch_size=batch_size, keep=keep,
                          progress=progress, cancel=cancel, on_error=on_error, **kwargs):
        if isinstance(r, ImageFailure):
            out.failures.append((r.source, r.error))
            continue
        out.sources.append(r.source)
        for m in decl:
            v = np.asarray(r.values[m.name], np.float64)
            if m.name in sums and sums[m.name].shape != v.shape:
                raise ValueError(f"{m.name}: {r.source} gives shape {v.shape}, earlier images "
                                 f"{sums[m.name].shape}; images of one run must give one grid")
            sums[m.name] = sums.get(m.name, 0.0) + v
            if m.keeps_per_image:
                out.per_image.setdefault(m.name, []).append(v)
    out.cancelled = cancel is not None and cancel.is_set()
    out.means = {k: s / len(out.sources) for k, s in sums.items()}
    return out
