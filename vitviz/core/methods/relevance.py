"""Relevance (Chefer, Gur, Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV 2021): R = I; per block R += mean_h max(A * dA, 0) R.
Equations: vitviz.core.analysis.relevance (ViT), vitviz.core.analysis.swin_relevance (Swin),
vitviz.core.analysis.detr_relevance (DETR: the paper's encoder-decoder rules, eqs. 6-10)."""
from __future__ import annotations

from . import Method, Param
from .targets import CONTRAST, TARGET

METHOD = Method(
    name="relevance",
    title="Relevance",
    compute={"vit": "vitviz.core.methods.relevance:vit", "swin": "vitviz.core.methods.relevance:swin",
             "detr": "vitviz.core.methods.relevance:detr"},
    params=(
        TARGET, CONTRAST,
        Param("start_layer", 0, min=0, label="Start layer",
              help="first block whose attention is used (Swin: counted over all stages; DETR: encoder "
                   "layers, the decoder is always used)"),
    ),
    needs_grad=True,
    context=("query",),
    value_label="relevance",
    description="Chefer et al. 2021: R = I, then R += mean_h max(dA * A, 0) R per block, for the target "
                "class's logit; the map is R[query, patches].",
)


def vit(analysis, query="cls", target: int = -1, contrast: int = -1, start_layer: int = 0):
    from ..analysis.relevance import relevance_row
    from .vit_maps import vit_token_map

    return vit_token_map(analysis, relevance_row, query, target, contrast, start_layer)


def swin(analysis, query=None, target: int = -1, contrast: int = -1, start_layer: int = 0, **_view):
    """The pooled prediction's relevance on the stage-0 grid; `query` and the view's stage/block do
    not apply (Swin has no class token: it classifies from the mean of its last tokens)."""
    from ..analysis.swin_relevance import swin_relevance
    from ..capture.grad_swin import swin_products

    p, _ = swin_products(analysis, target, contrast)
    return swin_relevance(analysis.blocks, p, start_layer).astype("float32")


def detr(analysis, query=None, target: int = -1, contrast: int = -1, start_layer: int = 0, **_view):
    """Detection `target`'s (object query; -1: the most confident) relevance R_qi[target] over the
    feature grid, NaN on padding. The view's query/layer/head do not apply."""
    from ..analysis.detr_relevance import detr_relevance
    from ..capture.grad_detr import detr_products

    p, t = detr_products(analysis, target, contrast)
    _, _, r_qi = detr_relevance(p, start_layer)
    return analysis._masked(r_qi[t.index])
