"""The attention products A * dA of a CLIP prompt's similarity, and the dispatch the ViT gradient
methods (relevance, grad_rollout) call: a class index goes to grad_vit, a prompt to text_products.
Apart from clip_text so that methods.targets (which describes text targets) does not reach
capture.grad_vit, whose imports reach the analyses that import methods.targets (an import circle).
"""
from __future__ import annotations


def vit_products(analysis, target=-1, contrast: int = -1):
    """(P, target) for grad_vit's class index, or for a text prompt (y = cos(image, prompt))."""
    from ..methods.targets import check_text_target, is_text

    if is_text(target):
        check_text_target(analysis, contrast)
        return text_products(analysis, target)
    from ..capture.grad_vit import vit_products as class_products

    return class_products(analysis, target, contrast)


def text_products(analysis, prompt: str):
    """(P (L, H, N, N) = A * dA for y = cos(image, prompt), TextTarget): grad_vit's capture with the
    similarity as the one score; cached on the analysis per prompt."""
    import torch
    import torch.nn.functional as F
    from dataclasses import replace

    from ..capture.grad_vit import attention_grads, weighted
    from ..gradients import cached_backward, model_of
    from .clip_text import TextTarget, text_embedding

    loaded = model_of(analysis)
    t = torch.from_numpy(text_embedding(analysis, prompt))

    class Similarity(torch.nn.Module):
        """The image tower with cos(image embedding, t) as its only 'logit' (shape (n, 1))."""

        def __init__(self, tower):
            super().__init__()
            self.tower = tower
            self.encoder = tower.encoder  # where grad_vit's hooks find the attention modules

        def forward(self, x):
            e = self.tower.image_embedding(x)
            return F.cosine_similarity(e, t.to(e.device, e.dtype)[None], dim=-1)[:, None]

    def compute():
        scores, attn, grad = attention_grads(replace(loaded, module=Similarity(loaded.module)),
                                             analysis.model_input, 0)
        return weighted(attn, grad), float(scores[0])

    p, score = cached_backward(analysis, ("vit-text", prompt), compute)
    return p, TextTarget(prompt, score)
