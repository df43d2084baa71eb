"""What the ViT gradient methods (relevance, gradient rollout) share: from the target's
attention-gradient products to a map on the patch grid."""
from __future__ import annotations


def vit_token_map(analysis, row_of, query, target, contrast, *args):
    """A ViT gradient method's map: `row_of(products, token index, *args)` for the target class's
    (or CLIP prompt's) attention-gradient products, on the patch grid."""
    from ..models.clip_grad import vit_products  # a class index, or a CLIP prompt

    p, _ = vit_products(analysis, target, contrast)
    return analysis._patch_values(row_of(p, analysis.token_index(query), *args)).astype("float32")
