"""Deletion / insertion curves (Petsiuk et al. 2018) on a plain model callable: numpy only.

Everything is in the model's input space: x is the (3, H, W) normalised tensor the model saw, and a
"pixel" is one of its H x W positions (all three channels at once). Blurring and the per-channel mean
commute with the per-channel affine normalisation, so doing them on the normalised tensor is the same
as doing them on the de-normalised pixels and normalising again.

predict(batch (B, 3, H, W) float32) -> logits (B, classes); scores are softmax probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

BLUR_SIGMA_224 = 5.0  # px at a 224 px input (RISE's insertion blur); scaled with the input size


class Cancelled(Exception):
    """The caller's cancel flag was set between two batches."""


def is_cancelled(cancel) -> bool:
    """cancel: None, a threading.Event (anything with is_set()) or a callable returning True."""
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    return bool(is_set() if is_set is not None else cancel())


def pixel_map(token_map: np.ndarray, input_hw: tuple[int, int], cell_hw: tuple[float, float] | None = None
              ) -> np.ndarray:
    """(rows, cols) map -> (H, W): each input pixel takes its token's value (nearest per patch).
    cell_hw: a token's size in input pixels (default H / rows, W / cols); pixels past the last full
    cell (an input not a multiple of the patch) take the last row's / column's value."""
    m = np.asarray(token_map, dtype=np.float64)
    rows, cols = m.shape
    h, w = input_hw
    ch, cw = cell_hw if cell_hw is not None else (h / rows, w / cols)
    r = np.minimum((np.arange(h) // ch).astype(int), rows - 1)
    c = np.minimum((np.arange(w) // cw).astype(int), cols - 1)
    return m[r[:, None], c[None, :]]


def pixel_order(values: np.ndarray) -> np.ndarray:
    """Flat pixel indices, most relevant first; ties in ascending pixel index (a stable sort of the
    negated values), NaN last."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.where(np.isnan(v), -np.inf, v)
    return np.argsort(-v, kind="stable")


def random_order(n: int, seed: int = 0) -> np.ndarray:
    """The baseline ranking: a permutation of the n pixels from numpy's PCG64 seeded with `seed`."""
    return np.random.default_rng(seed).permutation(n)


def step_counts(n: int, steps: int) -> np.ndarray:
    """Pixels changed at step i = 0..steps: round(i n / steps) (equal steps; 0 and n at the ends)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    return np.rint(np.arange(steps + 1) * n / steps).astype(np.int64)


def blur_sigma(input_hw: tuple[int, int]) -> tuple[float, float]:
    """Gaussian sigma per axis: 5 px at 224, proportional to the input's height and width."""
    return BLUR_SIGMA_224 * input_hw[0] / 224, BLUR_SIGMA_224 * input_hw[1] / 224


def blurred(x: np.ndarray) -> np.ndarray:
    """Each channel of x (3, H, W) through a Gaussian (scipy.ndimage, reflected borders)."""
    from scipy.ndimage import gaussian_filter

    sigma = blur_sigma(x.shape[-2:])
    return np.stack([gaussian_filter(c.astype(np.float64), sigma) for c in x]).astype(np.float32)


def channel_mean(x: np.ndarray) -> np.ndarray:
    """(3, H, W) filled with each channel's mean: what removed pixels become."""
    m = x.reshape(x.shape[0], -1).astype(np.float64).mean(axis=1)
    return np.broadcast_to(m[:, None, None], x.shape).astype(np.float32)


def trapezoid(y: Sequence[float], x: Sequence[float]) -> float:
    """Area under y(x) by the trapezoid rule."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


@dataclass(frozen=True)
class Job:
    """One perturbed image: `base` with the first `k` pixels of `order` taken from `fill`."""

    base: np.ndarray  # (3, H, W)
    fill: np.ndarray  # (3, H, W)
    order: np.ndarray  # (H * W,) flat pixel indices
    k: int

    def image(self) -> np.ndarray:
        out = np.array(self.base, dtype=np.float32, copy=True)
        if self.k:
            idx = self.order[:self.k]
            c = out.shape[0]
            out.reshape(c, -1)[:, idx] = np.asarray(self.fill).reshape(c, -1)[:, idx]
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def score_jobs(predict: Callable, jobs: Sequence[Job], target: int, batch_size: int = 16,
               progress: Callable | None = None, cancel=None, done: int = 0, total: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(probability of `target`, top-1 class) per job, the images built and run `batch_size` at a time.
    progress(done, total) after each batch (done/total offset by the caller's own counts when one
    curve is part of a bigger run); cancel is checked before each batch (raises Cancelled)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    total = len(jobs) + done if total is None else total
    probs, top = [], []
    for start in range(0, len(jobs), batch_size):
        if is_cancelled(cancel):
            raise Cancelled("faithfulness run cancelled")
        batch = np.stack([j.image() for j in jobs[start:start + batch_size]])
        p = softmax(np.asarray(predict(batch)))
        probs.append(p[:, target])
        top.append(p.argmax(axis=1))
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return np.concatenate(probs) if probs else np.zeros(0), np.concatenate(top) if top else np.zeros(0, int)


@dataclass
class Curves:
    """Deletion and insertion curves of one ranking: steps + 1 points each over `fractions`."""

    fractions: np.ndarray  # changed pixels / all pixels, 0 .. 1
    deletion: np.ndarray  # probability of the target, from the untouched image down
    insertion: np.ndarray  # from the blurred image up
    extra: dict = field(default_factory=dict)

    @property
    def deletion_auc(self) -> float:
        return trapezoid(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> float:
        return trapezoid(self.insertion, self.fractions)


def curve_jobs(x: np.ndarray, order: np.ndarray, steps: int) -> tuple[np.ndarray, list[Job], list[Job]]:
    """(fractions, deletion jobs, insertion jobs) for one ranking of x's pixels."""
    n = x.shape[-2] * x.shape[-1]
    counts = step_counts(n, steps)
    mean, soft = channel_mean(x), blurred(x)
    deletion = [Job(x, mean, order, int(k)) for k in counts]
    insertion = [Job(soft, x, order, int(k)) for k in counts]
    return counts / n, deletion, insertion


def deletion_insertion(predict: Callable, x: np.ndarray, order: np.ndarray, target: int, steps: int = 50,
                       batch_size: int = 16, progress: Callable | None = None, cancel=None) -> Curves:
    """Both curves for one ranking (`order`, most relevant pixel first) of x (3, H, W)."""
    x = np.asarray(x, dtype=np.float32)
    if order.shape != (x.shape[-2] * x.shape[-1],):
        raise ValueError(f"order must rank all {x.shape[-2] * x.shape[-1]} pixels, not {order.shape}")
    fractions, dele, ins = curve_jobs(x, order, steps)
    probs, _ = score_jobs(predict, dele + ins, target, batch_size, progress, cancel)
    return Curves(fractions, probs[:len(dele)], probs[len(dele):])
