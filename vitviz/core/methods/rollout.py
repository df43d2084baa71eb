"""Attention rollout (Abnar & Zuidema 2020): R = A'_L ... A'_1 with A'_l = rownorm(0.5 (fuse(A_l)) + 0.5 I)."""
from __future__ import annotations

from ..analysis.heads import FUSIONS
from . import Method, Param

METHOD = Method(
    name="rollout",
    title="Rollout",
    compute={"vit": "vitviz.core.methods.rollout:vit"},
    params=(
        Param("head_fusion", "mean", choices=FUSIONS, label="Head fusion",
              help="how each layer's heads are combined before the product"),
        Param("discard_ratio", 0.0, min=0.0, max=1.0, max_open=True, step=0.05, label="Discard ratio",
              help="share of each layer's weakest links set to 0 (never the class token's own)"),
    ),
    context=("query",),
    value_label="rollout",
    description="Attention flow through every layer with the residual added as the identity.",
)


def vit(analysis, query="cls", head_fusion: str = "mean", discard_ratio: float = 0.0):
    return analysis.rollout(head_fusion, discard_ratio, query)
