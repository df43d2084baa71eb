"""Positive / negative perturbation (Chefer, Gur, Wolf, CVPR 2021): remove a growing share of the most
(positive) or least (negative) relevant input pixels, replacing them with the input's per-channel mean,
and watch the target class. Per image: its probability and whether it is still the top-1 class at each
share; over many images: top-1 accuracy per share, and the area under it by the trapezoid rule over
the shares. A faithful map makes positive perturbation fall fast (low AUC) and negative slowly (high).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .curves import Job, channel_mean, score_jobs, trapezoid

FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 10% .. 90% removed


@dataclass
class Perturbation:
    """One image, one ranking. *_correct: the target is still the top-1 class."""

    fractions: np.ndarray
    positive: np.ndarray  # probability of the target, most relevant pixels removed first
    negative: np.ndarray  # least relevant first
    positive_correct: np.ndarray
    negative_correct: np.ndarray

    @property
    def positive_auc(self) -> float:
        """Area under this image's probability curve (positive): lower is more faithful."""
        return trapezoid(self.positive, self.fractions)

    @property
    def negative_auc(self) -> float:
        return trapezoid(self.negative, self.fractions)


def removed_counts(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Pixels removed for each share: round(f n)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or not len(f) or f.min() < 0 or f.max() > 1:
        raise ValueError(f"fractions must be shares in [0, 1], not {fractions!r}")
    return np.rint(f * n).astype(np.int64)


def perturbation(predict: Callable, x: np.ndarray, order: np.ndarray, target: int,
                 fractions: Sequence[float] = FRACTIONS, batch_size: int = 16,
                 progress: Callable | None = None, cancel=None) -> Perturbation:
    """Both perturbations for one ranking (`order`: most relevant pixel first) of x (3, H, W)."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-2] * x.shape[-1]
    if order.shape != (n,):
        raise ValueError(f"order must rank all {n} pixels, not {order.shape}")
    counts = removed_counts(n, fractions)
    mean = channel_mean(x)
    least_first = order[::-1]
    jobs = [Job(x, mean, order, int(k)) for k in counts] + [Job(x, mean, least_first, int(k)) for k in counts]
    probs, top = score_jobs(predict, jobs, target, batch_size, progress, cancel)
    m = len(counts)
    correct = top == target
    return Perturbation(np.asarray(fractions, dtype=np.float64), probs[:m], probs[m:], correct[:m], correct[m:])


def accuracy_curve(results: Sequence[Perturbation], which: str = "positive") -> tuple[np.ndarray, float]:
    """(top-1 accuracy per share over the images, its trapezoid AUC over the shares)."""
    if not results:
        raise ValueError("no images")
    acc = np.mean([getattr(r, f"{which}_correct") for r in results], axis=0)
    return acc, trapezoid(acc, results[0].fractions)
