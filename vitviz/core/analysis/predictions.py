"""Class predictions from logits, shared by the classification families."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    index: int
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def top_predictions(logits: np.ndarray | None, class_names: list[str] | None, k: int = 5) -> list[Prediction]:
    """The k most probable classes (empty for a checkpoint without a classifier head)."""
    if logits is None:
        return []
    p = softmax(logits)
    order = np.argsort(-p, kind="stable")[:k]
    names = class_names or []
    return [Prediction(int(i), names[i] if i < len(names) else f"class {i}", float(p[i])) for i in order]
