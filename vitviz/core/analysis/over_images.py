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
    """Every analysis in `names` on every image, streaming; means over the images that were read,
    element by element over the images where the value is defined (a NaN, e.g. a head with no
    attention on the patches, is left out; NaN where no image has one).
    params: {name: {param: value}}. Results of different shapes (images giving different grids)
    cannot be averaged: a ValueError says so."""
    from ..batch import ImageFailure, analyze_many

    decl = [get_measure(n) for n in names]
    params = params or {}
    resolved = {m.name: m.resolve(params.get(m.name)) for m in decl}
    out = FolderMeasures(params=resolved)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}  # images with a finite value, element by element

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
            sums[m.name] = sums.get(m.name, 0.0) + np.where(np.isfinite(v), v, 0.0)
            counts[m.name] = counts.get(m.name, 0) + np.isfinite(v)
            if m.keeps_per_image:
                out.per_image.setdefault(m.name, []).append(v)
    out.cancelled = cancel is not None and cancel.is_set()
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where no image has a value
        out.means = {k: np.where(counts[k] > 0, s / np.maximum(counts[k], 1), np.nan) for k, s in sums.items()}
    return out


# what a folder run of the analyses window computes per family: the analyses whose value depends on
# the image and has a mean (the position embedding and the filters are the model's, the same for all)
FOLDER_ANALYSES = {"vit": ("attention_distance", "attention_entropy"),
                   "swin": ("attention_distance", "attention_entropy"),
                   "detr": ("query_boxes",)}

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
               "_backward_hooks", "_backward_pre_hooks")


def private_model(loaded):
    """A LoadedModel whose module objects are its own but whose parameters and buffers are the same
    tensors as `loaded`'s (no second copy of the weights; eval mode never writes them).

    Capture registers hooks on the model's modules for the length of a forward: two threads running
    the same modules (the GUI worker on the image on screen, a folder run beside it) would each
    record the other's attention. A folder run on this copy cannot. The copy is made without the
    hooks in place on the original at the time (a forward running elsewhere keeps its own)."""
    import copy
    import dataclasses
    import itertools
    from collections import OrderedDict

    module = loaded.module
    for attempt in range(5):  # the other thread adds or removes hooks while we copy: try again
        memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
        try:
            clone = copy.deepcopy(module, memo)
            break
        except RuntimeError:  # "dictionary changed size during iteration"
            if attempt == 4:
                raise
    for m in clone.modules():
        for name in _HOOK_DICTS:
            if hasattr(m, name):
                setattr(m, name, OrderedDict())
    return dataclasses.replace(loaded, module=clone)
