"""What class-specific methods need from an analysis: the way back to its model, the target's score,
and a cache of backward passes.

An analysis is plain data; gradient methods must run the model again (forward with gradients, one
backward for the target score). analyze() attaches the LoadedModel it ran as a private attribute
(not a dataclass field: it is in no repr, comparison or sidecar), and each backward's result is
cached on the analysis by (family, target, contrast), so switching method, discard ratio, start layer
or query for the same class reuses it. No torch at import.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

_MODEL_ATTR = "_vitviz_model"
_CACHE_ATTR = "_vitviz_backward_cache"
_LOCK = threading.Lock()  # the GUI worker computes while the GUI thread reads
BACKWARDS_KEPT = 8  # backward results kept per analysis (ViT-B: 12 x 12 x 197 x 197 float32 = 22 MB each)


def attach_model(analysis, loaded) -> None:
    """Remember the LoadedModel `analysis` came from (analyze() and analyze_many() call this)."""
    object.__setattr__(analysis, _MODEL_ATTR, loaded)


def model_of(analysis):
    loaded = getattr(analysis, _MODEL_ATTR, None)
    if loaded is None:
        raise ValueError("this analysis has no model attached, so class-specific (gradient) methods "
                         "cannot run it backward: make it with vitviz.analyze(...) / analyze_many(...)")
    return loaded


def has_model(analysis) -> bool:
    return getattr(analysis, _MODEL_ATTR, None) is not None


@dataclass(frozen=True)
class Target:
    """The score y_t a gradient method explains: a class logit (minus another class's, for contrast),
    or for DETR one detection's class logit."""

    index: int  # the class (classifiers) or the object query (DETR)
    name: str
    score: float  # y_t as the forward computed it
    probability: float  # softmax probability of the class (DETR: of the detection's class)
    contrast: int = -1  # class subtracted ("why index rather than contrast"), -1 for none
    contrast_name: str = ""
    cls: int = -1  # DETR: the detection's predicted class

    @property
    def label(self) -> str:
        """For titles and sidecars: 'tabby (281)', 'tabby (281) − tiger (292)', 'query 3: square'."""
        if self.cls >= 0:
            return f"query {self.index}: {self.name}"
        text = f"{self.name} ({self.index})"
        return text + (f" − {self.contrast_name} ({self.contrast})" if self.contrast >= 0 else "")

    def to_json(self) -> dict:
        out = {"index": self.index, "name": self.name, "score": self.score, "probability": self.probability}
        if self.contrast >= 0:
            out.update(contrast=self.contrast, contrast_name=self.contrast_name)
        if self.cls >= 0:
            out["class"] = self.cls
        return out


def class_name(analysis, index: int) -> str:
    names = getattr(analysis, "class_names", None) or []
    return names[index] if 0 <= index < len(names) else f"class {index}"


def class_target(analysis, target: int = -1, contrast: int = -1) -> Target:
    """target -1: the top-1 class. contrast -1: none, else y = logit[target] - logit[contrast]."""
    if isinstance(target, str) or isinstance(contrast, str):  # a CLIP prompt (vitviz.core.models.clip_grad)
        raise ValueError(f"a text target needs a CLIP model (a ViT), not a {analysis.family} model: "
                         "its targets are class indices (-1: the top class)")
    logits = getattr(analysis, "logits", None)
    if logits is None:
        raise ValueError("this model has no classifier head: class-specific methods need class scores")
    n = len(logits)
    t = int(np.argmax(logits)) if int(target) == -1 else int(target)
    for what, v in (("target", t), ("contrast", int(contrast))):
        if not (-1 <= v < n) or (what == "target" and v < 0):
            raise ValueError(f"{what} {v} is not a class of this model (0..{n - 1}, -1 for the top class)")
    c = int(contrast)
    if c == t:
        raise ValueError(f"contrast {c} is the target itself: the contrast would be 0 everywhere")
    from .analysis.predictions import softmax

    p = softmax(np.asarray(logits))
    score = float(logits[t]) - (float(logits[c]) if c >= 0 else 0.0)
    return Target(t, class_name(analysis, t), score, float(p[t]), c, class_name(analysis, c) if c >= 0 else "")


def cached_backward(analysis, key: tuple, compute):
    """compute() once per key on this analysis (LRU of BACKWARDS_KEPT)."""
    with _LOCK:
        cache = getattr(analysis, _CACHE_ATTR, None)
        if cache is None:
            cache = OrderedDict()
            object.__setattr__(analysis, _CACHE_ATTR, cache)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = compute()  # outside the lock: a backward takes long; a duplicate is harmless
    with _LOCK:
        cache[key] = value
        while len(cache) > BACKWARDS_KEPT:
            cache.popitem(last=False)
    return value


def is_cached(analysis, key: tuple) -> bool:
    cache = getattr(analysis, _CACHE_ATTR, None)
    return cache is not None and key in cache
