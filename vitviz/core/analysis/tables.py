"""The ViT paper's, DINO's and the register paper's analyses, declared once.

Each declaration names the analysis, its result's axes, its typed parameters (vitviz.core.methods
.Param) and, per family, the function "module:attr" computing it from an analysis. One entry point:

    analysis.analyse("attention_distance")                  # (layers, heads)
    measure(analysis, "dino_masks", threshold=0.6, layer=-1)  # the same, as a function

Over many images: vitviz.core.analysis.over_images.measure_many (kept apart: it reaches the
batch runner, which reaches the analyses).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import numpy as np

from ..methods import Param, resolve_params
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
        return resolve_params(f"analysis {self.name!r}", self.params, params)

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
