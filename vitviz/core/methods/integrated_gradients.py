"""Integrated Gradients (Sundararajan, Taly, Yan, ICML 2017) from Captum, summed onto the token grid.

IG_i = (x_i - x'_i) * integral_0^1 dy/dx_i (x' + a (x - x')) da, computed by
captum.attr.IntegratedGradients (Gauss-Legendre quadrature with `steps` points) on the model input
the analysis holds, for the target's score y (its logit, minus the contrast class's; for a CLIP model
the prompt's image-text cosine similarity, minus the contrast prompt's). Each token's
value is the sum of IG over its pixels and channels (pixels past the last full cell count to the last
row / column, as vitviz.core.faithfulness.curves.pixel_map reads them), so by completeness the map
sums to y(x) - y(x') up to the quadrature error ("abs_sum" sums |IG| instead: magnitude, no sign).
Baselines x': "black" (pixel value 0 after normalisation), "mean" (each channel's mean: what deletion
fills in), "blur" (the insertion's blurred start image). Optional: `pip install 'vitviz[baselines]'`.
"""
from __future__ import annotations

import numpy as np

from . import Method, Param
from .targets import CONTRAST, TARGET

BASELINES = ("black", "mean", "blur")

METHOD = Method(
    name="integrated_gradients",
    title="Integrated Gradients (Captum)",
    compute={"vit": "vitviz.core.methods.integrated_gradients:compute",
             "swin": "vitviz.core.methods.integrated_gradients:compute"},
    params=(
        TARGET, CONTRAST,
        Param("baseline", "black", choices=BASELINES, label="Baseline",
              help="the reference image x': black pixels, the channel means, or a blurred copy"),
        Param("steps", 64, min=2, max=512, label="Steps", help="quadrature points along the path"),
        Param("reduce", "sum", choices=("sum", "abs_sum"), label="Reduce",
              help="per token: the sum of the attributions (signed) or of their magnitudes"),
    ),
    needs_grad=True,
    context=(),
    value_label="integrated gradients",
    description="Captum's Integrated Gradients of the target's logit from a baseline image, summed per "
                "token; the map sums to y(x) - y(baseline) (completeness).",
)


def require(module: str, what: str):
    """import_module(module), or an ImportError that says how to install the baselines."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs the optional package {module.split('.')[0]!r}: "
                          "pip install 'vitviz[baselines]' (captum, grad-cam)") from exc


def baseline_image(analysis, baseline: str) -> np.ndarray:
    """x' (3, H, W) float32 in the model's normalised input space."""
    x = np.asarray(analysis.model_input, dtype=np.float32)
    if baseline == "black":
        mean, std = np.asarray(analysis.input_mean), np.asarray(analysis.input_std)
        return np.broadcast_to((-mean / std)[:, None, None], x.shape).astype(np.float32)
    from ..faithfulness.curves import blurred, channel_mean

    return channel_mean(x) if baseline == "mean" else blurred(x)


def pool_to_grid(values: np.ndarray, grid) -> np.ndarray:
    """(H, W) per-pixel values -> (rows, cols) sums per token."""
    h, w = values.shape
    r = np.minimum((np.arange(h) // grid.cell_h).astype(int), grid.rows - 1)
    c = np.minimum((np.arange(w) // grid.cell_w).astype(int), grid.cols - 1)
    cell = (r[:, None] * grid.cols + c[None, :]).ravel()
    sums = np.bincount(cell, weights=np.asarray(values, np.float64).ravel(), minlength=grid.rows * grid.cols)
    return sums.reshape(grid.rows, grid.cols)


def score_function(module, target: int, contrast: int = -1):
    """x (B, 3, H, W) -> y (B,): the target's logit, minus the contrast's."""
    def f(x):
        logits = module(x)
        return logits[:, target] - (logits[:, contrast] if contrast >= 0 else 0)
    return f


def attributions(analysis, target=-1, contrast=-1, baseline: str = "black",
                 steps: int = 64) -> tuple[np.ndarray, float]:
    """(IG (3, H, W) float64, Captum's convergence delta), cached on the analysis per setting. For a
    CLIP model the target is a prompt and y = cos(image, prompt) (vitviz.core.models.clip_grad)."""
    from ..gradients import cached_backward, model_of
    from ..models.clip_grad import score_model

    captum_attr = require("captum.attr", "Integrated Gradients")
    sm = score_model(analysis, target, contrast)

    def compute():
        import torch

        dev = model_of(analysis).device
        x = torch.from_numpy(np.ascontiguousarray(analysis.model_input, dtype=np.float32))[None].to(dev)
        x0 = torch.from_numpy(np.ascontiguousarray(baseline_image(analysis, baseline)))[None].to(dev)
        ig = captum_attr.IntegratedGradients(score_function(sm.module, sm.index, sm.contrast))
        with torch.enable_grad():
            attr, delta = ig.attribute(x, baselines=x0, n_steps=int(steps), internal_batch_size=16,
                                       return_convergence_delta=True)
        return attr[0].detach().double().cpu().numpy(), float(delta[0])

    return cached_backward(analysis, ("integrated_gradients", *sm.key, baseline, int(steps)), compute)


def compute(analysis, target=-1, contrast=-1, baseline: str = "black", steps: int = 64,
            reduce: str = "sum") -> np.ndarray:
    """(rows, cols) float32 on the analysis's token grid (Swin: the stage-0 patch grid)."""
    attr, _ = attributions(analysis, target, contrast, baseline, steps)
    per_pixel = np.abs(attr).sum(axis=0) if reduce == "abs_sum" else attr.sum(axis=0)
    return pool_to_grid(per_pixel, analysis.grid).astype(np.float32)
