"""Gradient rollout (jacobgil/vit-explain's grad_rollout with its issues #6 and #16 fixed): attention
weighted by its gradient for the target class, rolled out through every layer.
Equations: vitviz.core.analysis.relevance."""
from __future__ import annotations

from . import Method, Param
from .targets import CONTRAST, TARGET

METHOD = Method(
    name="grad_rollout",
    title="Gradient rollout",
    compute={"vit": "vitviz.core.methods.grad_rollout:vit"},
    params=(
        TARGET, CONTRAST,
        Param("discard_ratio", 0.9, min=0.0, max=1.0, max_open=True, step=0.05, label="Discard ratio",
              help="share of each layer's weakest gradient-weighted links set to 0 (never the class token's own)"),
    ),
    needs_grad=True,
    context=("query",),
    value_label="gradient rollout",
    description="F_l = max(mean_h A_l * dA_l, 0), lowest links dropped, rownorm((F_l + I) / 2), "
                "R = F_L ... F_1 for the target class's logit (vit-explain, issues #6 and #16 fixed).",
)


def vit(analysis, query="cls", target: int = -1, contrast: int = -1, discard_ratio: float = 0.9):
    from ..analysis.relevance import grad_rollout_row
    from .vit_maps import vit_token_map

    return vit_token_map(analysis, grad_rollout_row, query, target, contrast, discard_ratio)
