"""The ViT paper's, DINO's and the register paper's analyses, declared once.

Each declaration names the analysis, its result's axes, its typed parameters (vitviz.core.methods
.Param) and, per family, the function "module:attr" computing it from an analysis. One entry point:

    analysis.analyse("attention_distance")                  # (layers, heads)
    measure(analysis, "dino_masks", threshold=0.6, layer=-1)  # the same, as a function
    measure_many(paths, ["attention_distance"], model="demo_vit")  # the mean over images

Over many images each image's attention is reduced to these results and dropped
(vitviz.core.batch.analyze_many with a `keep` function), so memory does not grow with the count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module

import numpy as np

from ..methods import Param
from ..named import NamedTable


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    compute: dict  # family -> "module:function"; function(analysis, **params) -> ndarray
    axes: tuple  # names of the result's axes, e.g. ("layer", "head")
    unit: str = ""
    params: tuple = ()
    needs_model: bool = False  # reads the model's parameters or runs it again
    description: str = ""
    per_image: bool | None = None  # kept for every image over a folder (None: the (layer, head) tables)

    @property
    def per_layer_head(self) -> bool:
        """A (layers, heads) table: small, kept per image over a folder and written to CSV."""
        return self.axes == ("layer", "head")

    @property
    def keeps_per_image(self) -> bool:
        return self.per_layer_head if self.per_image is None else self.per_image

    def resolve(self, params: dict | None = None) -> dict:
        params = dict(params or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"analysis {self.name!r} has no parameter {', '.join(unknown)} "
                             f"(it takes: {', '.join(sorted(known)) or 'none'})")
        return {p.name: p.check(params.get(p.name, p.default)) for p in self.params}

    def __call__(self, analysis, **params) -> np.ndarray:
        if analysis.family not in self.compute:
            raise ValueError(f"analysis {self.name!r} is not available for {analysis.family} models "
                             f"(it works with: {', '.join(self.compute)})")
        module, attr = self.compute[analysis.family].split(":")
        return np.asarray(getattr(import_module(module), attr)(analysis, **self.resolve(params)))


_P = "vitviz.core.analysis."
_MEASURES: NamedTable[Measure] = NamedTable("analysis", missing=ValueError)
for _m in (
    Measure("attention_distance", "Mean attention distance",
            {"vit": _P + "distance:vit", "swin": _P + "swin_distance:attention_distance"},
            ("layer", "head"), "pixels",
            description="mean over patch queries i of sum_j Â_ij ||p_i - p_j||, Â the attention rows "
                        "renormalised over the patch keys, p patch centres in model-input pixels (Swin: inside "
                        "the windows, at the tokens' true positions; layer = block over all stages)"),
    Measure("attention_entropy", "Attention entropy",
            {"vit": _P + "entropy:vit", "swin": _P + "swin_distance:attention_entropy"}, ("layer", "head"),
            "nats", description="mean over patch queries i of -sum_j A_ij log A_ij over all keys"),
    Measure("position_similarity", "Position-embedding similarity",
            {"vit": _P + "embeddings:position_similarity"}, ("row", "col", "row", "col"), "cosine",
            needs_model=True,
            description="cosine similarity of each patch's position embedding (as the forward used "
                        "it) with every other patch's"),
    Measure("patch_filters", "Patch-embedding filter components",
            {"vit": _P + "embeddings:patch_filter_components"}, ("component", "y", "x", "rgb"), "",
            (Param("k", 28, min=1, label="components"),), needs_model=True,
            description="principal components of the patch-embedding filters, each scaled to [0, 1]"),
    Measure("dino_masks", "DINO head masks", {"vit": _P + "dino_masks:vit"}, ("head", "row", "col"), "",
            (Param("threshold", 0.6, min=0.0, max=1.0, step=0.05, label="mass kept"),
             Param("layer", -1, label="layer")),
            description="per head, the smallest set of patches holding `threshold` of the class "
                        "token's attention mass over the patches"),
    Measure("query_boxes", "DETR query boxes", {"detr": _P + "detr_queries:query_boxes"}, ("query", "box"),
            "", per_image=True,
            description="per object-query slot: box centre and size normalised by the image, best "
                        "real-class score, its class (over a folder: the slots' specialisation)"),
    Measure("token_norms", "Token norms", {"vit": _P + "token_norms:vit"}, ("layer", "token"), "",
            needs_model=True, description="||x_l,i|| of every token at every encoder layer's output"),
):
    _MEASURES.register(_m)


def register_measure(m: Measure, *, replace: bool = False) -> Measure:
    return _MEASURES.register(m, replace=replace)


def measures(family: str | None = None) -> list[Measure]:
    return [m for m in _MEASURES if family is None or family in m.compute]


def get_measure(name: str) -> Measure:
    return _MEASURES.get(name)


def measure(analysis, name: str, **params) -> np.ndarray:
    """The result of analysis `name` (see measures()) on one analysed image."""
    return get_measure(name)(analysis, **params)


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
