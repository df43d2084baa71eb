"""How faithful is a map? Deletion / insertion, positive / negative perturbation, model randomisation.

All perturbations happen in the model's input space: x is the (3, H, W) normalised tensor the analysis
holds (exactly what the model saw) and a pixel is one of its H x W positions. A method's map, on its
token grid, is upsampled to H x W by nearest neighbour per patch (each pixel takes its token's value)
and ranked, most relevant first, ties broken by pixel index (row-major, ascending). `random` ranks the
pixels by a seeded permutation (numpy PCG64): the baseline every method should beat. The score is the
softmax probability of the target class, by default the top-1 class of the untouched image.

Deletion / insertion (Petsiuk, Das, Saenko, "RISE", BMVC 2018). With n = H W pixels and `steps`
equal steps, step i = 0..steps changes the k_i = round(i n / steps) top-ranked pixels:
    deletion:  they take the per-channel mean of x; the curve starts at the untouched image.
    insertion: they are copied from x into a blurred x (Gaussian, sigma 5 px at 224, scaled with the
               input's height and width, scipy.ndimage, reflected borders); it starts at the blurred image.
The curves have steps + 1 points over the fractions f_i = k_i / n in [0, 1]; each AUC is the trapezoid
rule sum_i (f_i - f_{i-1}) (p_i + p_{i-1}) / 2. Faithful: low deletion AUC, high insertion AUC.

Positive / negative perturbation (Chefer, Gur, Wolf, CVPR 2021): remove (mean replacement) 10%..90% of
the most (positive) / least (negative) relevant pixels; per image the target's probability and whether
it is still top-1 at each share; over a folder top-1 accuracy per share (agreement with each image's
target) and its trapezoid AUC over the shares (vitviz.core.faithfulness.perturb).

Sanity check, cascading model randomisation (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018): on a copy of the model, re-initialise the classifier head, then the last block, then the
one before, ..., then the embedding; after each step recompute the method's map (a new forward, and a
new backward for gradient methods) and take its Spearman rank correlation with the original map.
A method whose maps still correlate above 0.9 once every weight is random is flagged: it does not
depend on what the model learned (vitviz.core.faithfulness.sanity). The data-randomisation test
(retraining on permuted labels) is out of scope: it needs a training run per model.

Perturbed images run through the analysis's own model (attached by analyze(): the gradient methods'
way back to it) `batch_size` at a time, as a plain forward without attention capture (the scores are
all that is needed), with a progress(done, total) callback and a cancel flag (a threading.Event or a
callable returning True; raises Cancelled between batches).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .curves import Cancelled, pixel_map, pixel_order, random_order, deletion_insertion, blur_sigma
from .perturb import FRACTIONS, perturbation as _perturbation

__all__ = ["Cancelled", "Faithfulness", "PerturbationResult", "faithfulness", "perturbation", "predictor",
           "method_map", "ranking", "merged_params"]

RANDOM = "random"


def predictor(loaded) -> Callable[[np.ndarray], np.ndarray]:
    """batch (B, 3, H, W) float32 numpy -> logits (B, classes) numpy, through loaded.module, no grad,
    at the model's precision, moving to the CPU if the GPU runs out of memory."""
    def predict(batch: np.ndarray) -> np.ndarray:
        import torch

        from ..models.devices import autocast, run_with_oom_fallback

        def run(lm):
            with torch.no_grad(), autocast(lm):
                out = lm.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(lm.device))
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise ValueError(f"{lm.name} does not output class logits: faithfulness is for classifiers")
            return out.float().cpu().numpy()

        return run_with_oom_fallback(run, loaded)

    return predict


def default_target(analysis, target: int | None) -> int:
    """target None / -1: the top-1 class of the untouched image."""
    if getattr(analysis, "logits", None) is None:
        raise ValueError("this model has no classifier head: faithfulness scores need class probabilities")
    return int(np.argmax(analysis.logits)) if target is None or int(target) < 0 else int(target)


def method_map(analysis, method: str, target: int, params: dict | None = None) -> np.ndarray:
    """analysis.explain(method, **params), a class-specific method explaining `target` unless the
    params name another."""
    from ..methods import get_method

    params = dict(params or {})
    if any(p.name == "target" for p in get_method(method).params):
        params.setdefault("target", target)
    return np.asarray(analysis.explain(method, **params), dtype=np.float64)


def ranking(analysis, method: str, target: int, params: dict | None = None, seed: int = 0) -> np.ndarray:
    """Flat input-pixel indices, most relevant first, for a method or "random"."""
    h, w = analysis.model_input.shape[-2:]
    if method == RANDOM:
        return random_order(h * w, seed)
    m = method_map(analysis, method, target, params)
    grid = analysis.grid
    cell = (grid.cell_h, grid.cell_w) if m.shape == grid.shape else None
    return pixel_order(pixel_map(m, (h, w), cell))


@dataclass
class Faithfulness:
    """Deletion and insertion of one map on one image (see the module docstring)."""

    method: str
    params: dict
    target: int
    target_name: str
    fractions: np.ndarray  # steps + 1 shares of pixels changed, 0 .. 1
    deletion: np.ndarray  # steps + 1 probabilities of the target
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    blur_sigma: tuple[float, float]
    seed: int | None = None  # the random baseline's

    @property
    def steps(self) -> int:
        return len(self.fractions) - 1

    def to_json(self) -> dict:
        return {"method": self.method, "params": dict(self.params), "target": self.target,
                "target_name": self.target_name, "steps": self.steps, "seed": self.seed,
                "blur_sigma": list(self.blur_sigma), "fractions": self.fractions.tolist(),
                "deletion": self.deletion.tolist(), "insertion": self.insertion.tolist(),
                "deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc}


@dataclass
class PerturbationResult:
    """Positive and negative perturbation of one map on one image."""

    method: str
    params: dict
    target: int
    fractions: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    positive_correct: np.ndarray
    negative_correct: np.ndarray
    positive_auc: float
    negative_auc: float
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"method": self.method, "params": dict(self.params), "target": self.target, "seed": self.seed,
                "fractions": self.fractions.tolist(), "positive": self.positive.tolist(),
                "negative": self.negative.tolist(), "positive_correct": self.positive_correct.tolist(),
                "negative_correct": self.negative_correct.tolist(),
                "positive_auc": self.positive_auc, "negative_auc": self.negative_auc}


def _class_name(analysis, index: int) -> str:
    from ..gradients import class_name

    return class_name(analysis, index)


def merged_params(method_params: dict | None, params: dict) -> dict:
    """The method's parameters: `method_params` (a dict, for names the call itself takes, e.g.
    Integrated Gradients' own `steps`) updated with the keyword ones; a name in both is an error."""
    out = dict(method_params or {})
    both = sorted(set(out) & set(params))
    if both:
        raise ValueError(f"parameter {', '.join(both)} given twice (in method_params and as a keyword)")
    out.update(params)
    return out


def faithfulness(analysis, method: str, steps: int = 50, target: int | None = None, *, seed: int = 0,
                 batch_size: int = 16, progress: Callable | None = None, cancel=None,
                 method_params: dict | None = None, **params) -> Faithfulness:
    """Deletion and insertion curves and AUCs of `method`'s map (or "random") for `target`.
    The method's parameters come as keywords, or in `method_params` when one is named like an
    argument of this function (`steps`, `seed`, ...)."""
    from ..gradients import model_of

    params = merged_params(method_params, params)
    t = default_target(analysis, target)
    order = ranking(analysis, method, t, params, seed)
    x = np.asarray(analysis.model_input, dtype=np.float32)
    c = deletion_insertion(predictor(model_of(analysis)), x, order, t, steps, batch_size, progress, cancel)
    return Faithfulness(method, params, t, _class_name(analysis, t), c.fractions, c.deletion, c.insertion,
                        c.deletion_auc, c.insertion_auc, blur_sigma(x.shape[-2:]),
                        seed if method == RANDOM else None)


def perturbation(analysis, method: str, target: int | None = None, *, fractions: Sequence[float] = FRACTIONS,
                 seed: int = 0, batch_size: int = 16, progress: Callable | None = None, cancel=None,
                 method_params: dict | None = None, **params) -> PerturbationResult:
    """Positive and negative perturbation of `method`'s map (or "random") for `target` (the method's
    parameters as in faithfulness())."""
    from ..gradients import model_of

    params = merged_params(method_params, params)
    t = default_target(analysis, target)
    order = ranking(analysis, method, t, params, seed)
    x = np.asarray(analysis.model_input, dtype=np.float32)
    r = _perturbation(predictor(model_of(analysis)), x, order, t, fractions, batch_size, progress, cancel)
    return PerturbationResult(method, params, t, r.fractions, r.positive, r.negative, r.positive_correct,
                              r.negative_correct, r.positive_auc, r.negative_auc,
                              seed if method == RANDOM else None)
