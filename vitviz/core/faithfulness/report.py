"""Faithfulness over many images: per-image rows and per-method means with standard errors.

Standard error of the mean: s / sqrt(n) with s the sample standard deviation (ddof 1); None for one
image. Perturbation accuracy per share is the fraction of images whose target is still top-1.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from .curves import trapezoid

AUCS = ("deletion_auc", "insertion_auc", "positive_auc", "negative_auc")


def check_methods(family: str, methods: Sequence[str]) -> None:
    """Every name is "random" or a method available for `family` (before any image runs)."""
    from ..methods import get_method

    from . import RANDOM

    for m in methods:
        if m != RANDOM:
            get_method(m).function(family)  # raises with the methods that do work


def image_row(analysis, methods: Sequence[str], steps: int = 50, params: dict | None = None, seed: int = 0,
              batch_size: int = 16, cancel=None, on_method: Callable | None = None) -> dict:
    """One image's values for each method (params: {method: {key: value}})."""
    from . import faithfulness, perturbation

    params = params or {}
    out = {}
    for m in methods:
        mp = params.get(m, {})  # as a dict: a method's own `steps` (Integrated Gradients) is not the curves'
        f = faithfulness(analysis, m, steps, seed=seed, batch_size=batch_size, cancel=cancel, method_params=mp)
        p = perturbation(analysis, m, seed=seed, batch_size=batch_size, cancel=cancel, method_params=mp)
        out[m] = {"deletion_auc": f.deletion_auc, "insertion_auc": f.insertion_auc,
                  "positive_auc": p.positive_auc, "negative_auc": p.negative_auc,
                  "deletion": f.deletion.tolist(), "insertion": f.insertion.tolist(),
                  "positive": p.positive.tolist(), "negative": p.negative.tolist(),
                  "positive_correct": p.positive_correct.tolist(), "negative_correct": p.negative_correct.tolist()}
        if on_method is not None:
            on_method(m)
    t = f.target
    probs = analysis.probabilities()
    return {"target": t, "target_name": f.target_name, "probability": float(probs[t]),
            "fractions": f.fractions.tolist(), "perturbation_fractions": p.fractions.tolist(), "methods": out}


def mean_se(values: Iterable[float]) -> dict:
    v = np.asarray(list(values), dtype=np.float64)
    n = len(v)
    return {"mean": float(v.mean()) if n else None,
            "se": float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else None, "n": n}


def summarise(rows: Sequence[dict], methods: Sequence[str]) -> dict:
    """{method: {auc: {mean, se, n}, positive_accuracy: [...], positive_accuracy_auc, ...}}."""
    out = {}
    if not rows:
        return out
    shares = rows[0]["perturbation_fractions"]
    for m in methods:
        vals = [r["methods"][m] for r in rows]
        s = {k: mean_se(v[k] for v in vals) for k in AUCS}
        s["deletion_curve"] = np.mean([v["deletion"] for v in vals], axis=0).tolist()
        s["insertion_curve"] = np.mean([v["insertion"] for v in vals], axis=0).tolist()
        for which in ("positive", "negative"):
            acc = np.mean([v[f"{which}_correct"] for v in vals], axis=0)
            s[f"{which}_accuracy"] = acc.tolist()
            s[f"{which}_accuracy_auc"] = trapezoid(acc, shares)
        out[m] = s
    return out
