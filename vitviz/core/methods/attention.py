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


def swin(analysis, stage: int | None = None, block: int | None = None, head="mean", query=(0, 0),
         direction: str = "from", layer: int | None = None):
    """query: the token (row, col) of that stage's grid (Swin has no class token). layer counts
    blocks over all stages (negative from the end), for callers that speak ViT; stage / block win
    over it. Default: the last block."""
    if stage is None and block is None:
        n = len(analysis.blocks)
        i = -1 if layer is None else int(layer)
        if not -n <= i < n:
            raise IndexError(f"layer {layer} out of range (the model has {n} blocks over all stages)")
        stage, block = analysis.blocks[i].stage, analysis.blocks[i].block
    stage = -1 if stage is None else stage
    block = -1 if block is None else block
    try:
        if isinstance(query, str):
            raise ValueError
        row, col = (int(v) for v in query)
    except (TypeError, ValueError):
        raise ValueError(f"Swin has no class token: query must be a token (row, col), not {query!r}") from None
    grid = analysis.stage_grid(stage)
    if not (0 <= row < grid.rows and 0 <= col < grid.cols):
        raise IndexError(f"token ({row}, {col}) outside the {grid.rows}x{grid.cols} grid of stage {stage}")
    return analysis.attention_map(stage, block, head, (row, col), direction)


def detr(analysis, layer: int = -1, head="mean", query: int = 0):
    """Decoder cross-attention of object query `query` over the encoder's feature cells."""
    return analysis.cross_attention(layer, head, int(query))
