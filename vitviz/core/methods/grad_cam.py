"""Grad-CAM (Selvaraju et al., ICCV 2017) for ViT / Swin from the `grad-cam` package (pytorch_grad_cam).

The package's GradCAM hooks a target layer, takes the target score's gradient there and computes
cam = max(sum_c w_c A_c, 0) with w_c the mean over positions of dy/dA_c. As the package's ViT and
Swin tutorials do, the target layer is a block's first LayerNorm (ViT: encoder.layers[b].ln_1, its
patch tokens reshaped to the token grid; Swin: features' block b's norm1, already a (H, W) grid).
The map is the package's cam at token resolution (taken with its own get_cam_image from the
activations and gradients it recorded, before its resize to the input and its min-max scaling), so
values keep their scale across methods (for a CLIP model the score is a prompt's image-text cosine
similarity, vitviz.core.models.clip_grad); a Swin stage coarser than the patch grid is repeated onto the
stage-0 grid (nearest). Optional: `pip install 'vitviz[baselines]'`.
"""
from __future__ import annotations

import threading

import numpy as np

from . import Method, Param
from .integrated_gradients import require
from .targets import CONTRAST, TARGET

METHOD = Method(
    name="grad_cam",
    title="Grad-CAM (grad-cam)",
    compute={"vit": "vitviz.core.methods.grad_cam:vit", "swin": "vitviz.core.methods.grad_cam:swin"},
    params=(
        TARGET, CONTRAST,
        Param("block", -1, label="Block",
              help="the block whose input (first LayerNorm's output) is the target layer; -1 the last "
                   "(Swin: counted over all stages)"),
    ),
    needs_grad=True,
    context=(),
    value_label="Grad-CAM",
    description="pytorch_grad_cam's GradCAM on a block's first LayerNorm: ReLU of the activations weighted "
                "by their mean gradient for the target's logit, per token.",
)

_HOOKS = threading.Lock()  # the package hooks the shared module: one Grad-CAM at a time


class ScoreTarget:
    """The package's target protocol: output (classes,) of one image -> the score y."""

    def __init__(self, target: int, contrast: int = -1):
        self.target, self.contrast = target, contrast

    def __call__(self, output):
        return output[self.target] - (output[self.contrast] if self.contrast >= 0 else 0)


def token_cam(loaded, model_input: np.ndarray, layer, reshape, target: int, contrast: int = -1) -> np.ndarray:
    """The package's Grad-CAM at the target layer's resolution, (rows, cols) float64."""
    import torch

    pgc = require("pytorch_grad_cam", "Grad-CAM")
    x = torch.from_numpy(np.ascontiguousarray(model_input, dtype=np.float32))[None].to(loaded.device)
    x.requires_grad_(True)  # the layer's output is on the graph even when the weights are frozen
    targets = [ScoreTarget(target, contrast)]
    with _HOOKS, torch.enable_grad(), pgc.GradCAM(model=loaded.module, target_layers=[layer],
                                                  reshape_transform=reshape) as cam:
        cam(input_tensor=x, targets=targets)
        rec = cam.activations_and_grads
        if not rec.activations or not rec.gradients:
            raise RuntimeError("Grad-CAM recorded no activations or gradients at the target layer")
        raw = cam.get_cam_image(x, layer, targets, rec.activations[0].numpy(), rec.gradients[0].numpy())
    return np.maximum(raw[0], 0).astype(np.float64)


def _index(block: int, n: int) -> int:
    if not -n <= int(block) < n:
        raise IndexError(f"block {block} out of range (the model has {n} blocks)")
    return int(block) % n


def _cached(analysis, key, compute):
    from ..gradients import cached_backward

    return cached_backward(analysis, key, compute)


def vit(analysis, target=-1, contrast=-1, block: int = -1) -> np.ndarray:
    """For a CLIP model the target is a prompt: y = cos(image, prompt) (vitviz.core.models.clip_grad)."""
    from dataclasses import replace

    from ..gradients import model_of
    from ..models.clip_grad import score_model

    sm = score_model(analysis, target, contrast)
    loaded = model_of(analysis)
    layers = loaded.module.encoder.layers
    b = _index(block, len(layers))
    g, prefix = analysis.grid, analysis.num_prefix_tokens

    def reshape(tokens):  # (B, prefix + rows * cols, C) -> (B, C, rows, cols)
        patches = tokens[:, prefix:, :]
        return patches.reshape(patches.shape[0], g.rows, g.cols, patches.shape[2]).permute(0, 3, 1, 2)

    def compute():
        return token_cam(replace(loaded, module=sm.module), analysis.model_input, layers[b].ln_1, reshape,
                         sm.index, sm.contrast)

    return _cached(analysis, ("grad_cam", *sm.key, b), compute).astype(np.float32)


def swin(analysis, target=-1, contrast=-1, block: int = -1) -> np.ndarray:
    from torch import nn

    from ..gradients import model_of
    from ..models.clip_grad import score_model

    t = score_model(analysis, target, contrast).target  # a prompt is refused here, saying why
    loaded = model_of(analysis)
    stages = [f for f in loaded.module.features if isinstance(f, nn.Sequential)][1:]  # [0]: patch embedding
    blocks = [(s, m) for s, stage in enumerate(stages) for m in stage]
    stage, module = blocks[_index(block, len(blocks))]

    def compute():
        return token_cam(loaded, analysis.model_input, module.norm1, lambda a: a.permute(0, 3, 1, 2),
                         t.index, t.contrast)

    cam = _cached(analysis, ("grad_cam", t.index, t.contrast, _index(block, len(blocks))), compute)
    g = analysis.grid
    f = 2 ** stage  # each patch merging halves the grid (rounding up)
    r = np.minimum(np.arange(g.rows) // f, cam.shape[0] - 1)
    c = np.minimum(np.arange(g.cols) // f, cam.shape[1] - 1)
    return cam[r[:, None], c[None, :]].astype(np.float32)
