"""Token norms (Darcet et al. 2024, "Vision Transformers Need Registers"): ||x_l,i||_2 of every
token i at the output of every encoder layer l, from a pass of the analysis's own model input.
High-norm outliers: patch tokens whose norm exceeds `factor` times the median patch-token norm of
their layer.

The pass registers no hooks and does not call the attention modules through `__call__`: it runs in
the analyses window's thread while the main window's worker may be capturing attention from the
same model with hooks on those modules, and neither must see the other's forward. Each block is
torchvision's EncoderBlock.forward written out (x + attn(ln_1(x)), then + mlp(ln_2(x))); the tests
check it against the model's own layers.
"""
from __future__ import annotations

import numpy as np


def encoder_input(model, x):
    """(1, 3, H, W) -> (1, N, d): patch embedding, prefix tokens and the position embedding the
    forward adds, before the first encoder layer (eval: dropout is the identity)."""
    import torch

    from .embeddings import position_embedding_used

    patches = model.conv_proj(x)  # (1, d, n_h, n_w)
    n_h, n_w = patches.shape[-2:]
    patches = patches.flatten(2).transpose(1, 2)
    prefix = [t for t in (model.class_token, getattr(model, "dist_token", None),
                          getattr(model, "reg_tokens", None)) if t is not None]
    tokens = torch.cat([t.expand(x.shape[0], -1, -1) for t in prefix] + [patches], dim=1)
    pos = torch.as_tensor(position_embedding_used(model, n_h, n_w), dtype=tokens.dtype, device=tokens.device)
    p = tokens.shape[1] - n_h * n_w  # prefix tokens (register parameters hold several)
    tokens[:, p:] += pos
    tokens[:, :p] += model.encoder.pos_embedding[:, :p].to(tokens.dtype)  # kept as stored (zero if none)
    return tokens


def encoder_block(layer, x):
    """torchvision EncoderBlock.forward, the attention called through .forward (no hooks)."""
    y = layer.ln_1(x)
    y, _ = layer.self_attention.forward(y, y, y, need_weights=False)
    x = x + layer.dropout(y)
    return x + layer.mlp(layer.ln_2(x))


def token_norms(model, x) -> np.ndarray:
    """model: a torchvision-layout ViT; x (3, H, W) float32 -> (layers, N) float64."""
    import torch

    param = next(model.parameters())
    with torch.no_grad():
        h = encoder_input(model, torch.as_tensor(np.asarray(x))[None].to(param.device, param.dtype))
        norms = []
        for layer in model.encoder.layers:
            h = encoder_block(layer, h)
            norms.append(h[0].norm(dim=-1))
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
