"""Token norms (Darcet et al. 2024, "Vision Transformers Need Registers"): ||x_l,i||_2 of every
token i at the output of every encoder layer l, from a forward of the analysis's own model input
with a hook on each layer. High-norm outliers: patch tokens whose norm exceeds `factor` times the
median patch-token norm of their layer.
"""
from __future__ import annotations

import numpy as np


def token_norms(model, x) -> np.ndarray:
    """model: a torchvision-layout ViT; x (3, H, W) float32 -> (layers, N) float64."""
    import torch

    norms = []
    hooks = [layer.register_forward_hook(lambda m, args, out: norms.append(out[0].norm(dim=-1)))
             for layer in model.encoder.layers]
    try:
        with torch.no_grad():
            param = next(model.parameters())
            model(torch.as_tensor(np.asarray(x))[None].to(param.device, param.dtype))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(norms).double().cpu().numpy()


def vit(analysis) -> np.ndarray:
    from ..gradients import model_of

    return token_norms(model_of(analysis).module, analysis.model_input)


def high_norm_tokens(norms_layer: np.ndarray, num_prefix: int, factor: float = 2.0) -> np.ndarray:
    """(N,) norms of one layer -> indices of the patch tokens above factor x the median patch norm."""
    patches = np.asarray(norms_layer)[num_prefix:]
    return num_prefix + np.flatnonzero(patches > factor * np.median(patches))


def prefix_names(analysis) -> list[str]:
    """Names of the prefix tokens, in order: "class", then "distillation" (DeiT) and "register i"."""
    from ..gradients import has_model, model_of

    n = analysis.num_prefix_tokens
    dist = has_model(analysis) and getattr(model_of(analysis).module, "dist_token", None) is not None
    names = ["class"] + (["distillation"] if dist and n > 1 else [])
    return (names + [f"register {i}" for i in range(n - len(names))])[:n]
