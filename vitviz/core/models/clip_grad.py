"""Gradient methods with a CLIP prompt as the target: the score is the image-text similarity
y = cos(image embedding, text embedding of the prompt) (minus a contrast prompt's).

vit_products is the dispatch the attention methods (relevance, grad_rollout) call: a class index goes
to grad_vit, a prompt to text_products. score_model is the one the input-gradient methods
(integrated_gradients, grad_cam) call: a module whose output column `index` (minus column `contrast`)
is the score, for a class (the classifier itself) or a prompt (the image tower with the similarity as
its only output). Apart from clip_text so that methods.targets (which describes text targets) does not
reach capture.grad_vit, whose imports reach the analyses that import methods.targets (an import circle).
"""
from __future__ import annotations

from dataclasses import dataclass


def _text_target(analysis, target, contrast) -> bool:
    """True for a prompt target (checked); a class target of a CLIP model is an error that says why."""
    from ..methods.targets import check_text_target, is_text, takes_text

    if is_text(target) or is_text(contrast):
        check_text_target(analysis, target, contrast)
        return True
    if takes_text(analysis):
        raise ValueError("this CLIP model has no classifier head: its target is a text prompt, "
                         "e.g. target='a photo of a dog'")
    return False


def vit_products(analysis, target=-1, contrast=-1):
    """(P, target) for grad_vit's class index, or for a text prompt (y = cos(image, prompt))."""
    if _text_target(analysis, target, contrast):
        return text_products(analysis, target, contrast)
    from ..capture.grad_vit import vit_products as class_products

    return class_products(analysis, target, contrast)


def similarity_module(analysis, prompt: str, contrast=-1):
    """The image tower of `analysis`'s CLIP model as a module x (n, 3, H, W) -> y (n, 1) with
    y = cos(image, prompt) [- cos(image, contrast)]: the text embeddings are constants."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..gradients import model_of
    from .clip_text import text_embedding

    tower = model_of(analysis).module
    texts = [text_embedding(analysis, prompt)]
    if isinstance(contrast, str):
        texts.append(text_embedding(analysis, contrast))
    signs = torch.tensor([1.0, -1.0][:len(texts)])
    t = torch.from_numpy(np.stack(texts))  # (k, D) unit norm

    class Similarity(torch.nn.Module):
        """The image tower with the (signed sum of) cosine similarities as its only 'logit'."""

        def __init__(self):
            super().__init__()
            self.tower = tower
            self.encoder = tower.encoder  # where grad_vit's hooks find the attention modules

        def forward(self, x):
            e = self.tower.image_embedding(x)  # (n, D)
            cos = F.cosine_similarity(e[:, None], t.to(e.device, e.dtype)[None], dim=-1)  # (n, k)
            return (cos * signs.to(e.device, e.dtype)).sum(dim=1, keepdim=True)

    return Similarity()


def text_products(analysis, prompt: str, contrast=-1):
    """(P (L, H, N, N) = A * dA for y = cos(image, prompt) [- cos(image, contrast)], TextTarget):
    grad_vit's capture with the similarity as the one score; cached on the analysis per prompt."""
    from dataclasses import replace

    from ..capture.grad_vit import attention_grads, weighted
    from ..gradients import cached_backward, model_of
    from .clip_text import TextTarget, text_target

    loaded = model_of(analysis)

    def compute():
        module = similarity_module(analysis, prompt, contrast)
        scores, attn, grad = attention_grads(replace(loaded, module=module), analysis.model_input, 0)
        return weighted(attn, grad), float(scores[0])

    p, score = cached_backward(analysis, ("vit-text", prompt, contrast), compute)
    text_target(analysis, prompt, contrast)  # the title's score: known here, in the worker
    return p, TextTarget(prompt, score, contrast if isinstance(contrast, str) else "")


@dataclass(frozen=True)
class ScoreModel:
    """y = module(x)[:, index] - (module(x)[:, contrast] if contrast >= 0 else 0)."""

    module: object
    index: int
    contrast: int
    key: tuple  # what identifies the score in backward caches
    target: object  # the gradients.Target or clip_text.TextTarget


def score_model(analysis, target=-1, contrast=-1) -> ScoreModel:
    """The module and output column whose value a gradient method differentiates, for a class index
    (the classifier, vitviz.core.gradients.class_target) or a CLIP prompt (similarity_module)."""
    from ..gradients import class_target, model_of

    if _text_target(analysis, target, contrast):
        from .clip_text import text_target

        module = similarity_module(analysis, target, contrast)
        return ScoreModel(module, 0, -1, ("text", target, contrast), text_target(analysis, target, contrast))
    t = class_target(analysis, target, contrast)
    return ScoreModel(model_of(analysis).module, t.index, t.contrast, (t.index, t.contrast), t)
