"""Behaviour every family's analysis shares: the model's own input as an image, class predictions."""
from __future__ import annotations

import numpy as np

from .predictions import Prediction, softmax, top_predictions


class ExplainMixin:
    """`explain(method, **params)`: any registered method's map (vitviz.core.methods)."""

    def explain(self, method: str, **params) -> np.ndarray:
        """The map of `method` for this analysis, e.g. explain("rollout", discard_ratio=0.9);
        context (layer, head, query, direction) and the method's own parameters as keywords."""
        from ..methods import get_method

        return get_method(method)(self, **params)

    def analyse(self, name: str, **params) -> np.ndarray:
        """A whole-model analysis (vitviz.core.analysis.tables), e.g. analyse("attention_distance")."""
        from .tables import measure

        return measure(self, name, **params)

    # The paper analyses by name (each is analyse(name, ...); the families that lack one say so).
    def attention_distance(self) -> np.ndarray:
        """(layers, heads) mean attention distance in model-input pixels (ViT paper Fig. 7)."""
        return self.analyse("attention_distance")

    def attention_entropy(self) -> np.ndarray:
        """(layers, heads) mean attention entropy over patch queries, nats."""
        return self.analyse("attention_entropy")

    def position_similarity(self) -> np.ndarray:
        """(rows, cols, rows, cols) cosine similarity of the position embeddings the forward used."""
        return self.analyse("position_similarity")

    def patch_filter_components(self, k: int = 28) -> np.ndarray:
        """(k, P, P, 3) principal components of the patch embedding, as images in [0, 1]."""
        return self.analyse("patch_filters", k=k)

    def dino_masks(self, threshold: float = 0.6, layer: int = -1) -> np.ndarray:
        """(heads, rows, cols) bool: per head the fewest patches holding `threshold` of the class
        token's attention (DINO)."""
        return self.analyse("dino_masks", threshold=threshold, layer=layer)

    def token_norms(self) -> np.ndarray:
        """(layers, N) norm of every token at every layer's output (registers paper)."""
        return self.analyse("token_norms")

    def target_info(self, target: int = -1, contrast: int = -1):
        """What a class-specific method explains for `target` (-1: the top class / detection):
        a vitviz.core.gradients.Target with index, name, score and probability."""
        from ..methods.targets import target_info

        return target_info(self, target, contrast)


class ModelInputMixin(ExplainMixin):
    """Needs `model_input` (3, H, W) normalised, `input_mean`, `input_std`."""

    def input_image(self) -> np.ndarray:
        """The model input de-normalised to (H, W, 3) uint8: "what the model sees"."""
        std = np.asarray(self.input_std)[:, None, None]
        mean = np.asarray(self.input_mean)[:, None, None]
        x = self.model_input * std + mean
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)

    def input_note(self) -> str | None:
        """A sentence when the model saw little of the image or saw it out of shape (None: it is fine)."""
        return self.grid.transform.seen_note()


class ClassifierMixin(ModelInputMixin):
    """Needs `logits` (classes,) or None (a checkpoint without a head) and `class_names`."""

    def probabilities(self) -> np.ndarray | None:
        return None if self.logits is None else softmax(self.logits)

    def top_predictions(self, k: int = 5) -> list[Prediction]:
        return top_predictions(self.logits, self.class_names, k)

    def faithfulness(self, method: str, steps: int = 50, target: int | None = None, **params):
        """Deletion / insertion curves and AUCs of `method`'s map, or "random" (vitviz.core.faithfulness)."""
        from ..faithfulness import faithfulness

        return faithfulness(self, method, steps, target, **params)

    def perturbation(self, method: str, target: int | None = None, **params):
        """Positive / negative perturbation of `method`'s map (vitviz.core.faithfulness.perturb)."""
        from ..faithfulness import perturbation

        return perturbation(self, method, target, **params)

    def sanity(self, method: str, target: int | None = None, **params):
        """Cascading model randomisation of `method` (vitviz.core.faithfulness.sanity)."""
        from ..faithfulness.sanity import sanity

        return sanity(self, method, target, **params)
