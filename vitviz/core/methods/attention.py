"""Raw attention: one layer's post-softmax weights for a query (its row) or towards it (its column)."""
from __future__ import annotations

from . import Method

METHOD = Method(
    name="attention",
    title="Attention",
    compute={"vit": "vitviz.core.methods.attention:vit",
             "swin": "vitviz.core.methods.attention:swin",
             "detr": "vitviz.core.methods.attention:detr"},
    context=("layer", "head", "query", "direction", "stage", "block"),
    description="A_l[h, q, :] (direction 'from': where the query looks) or A_l[h, :, q] ('to'); "
                "heads fused by mean / max / min when head is a fusion.",
)


def vit(analysis, layer: int = -1, head="mean", query="cls", direction: str = "from"):
    return analysis.attention_map(layer, head, query, direction)


def swin(analysis, stage: int = -1, block: int = -1, head="mean", query=(0, 0), direction: str = "from"):
    """query: the token (row, col) of that stage's grid."""
    return analysis.attention_map(stage, block, head, tuple(query), direction)


def detr(analysis, layer: int = -1, head="mean", query: int = 0):
    """Decoder cross-attention of object query `query` over the encoder's feature cells."""
    return analysis.cross_attention(layer, head, int(query))
