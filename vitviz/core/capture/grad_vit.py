"""Each ViT layer's attention A_l and its gradient dy/dA_l for one target score y.

The weights nn.MultiheadAttention returns are not on the path to its output (they get no gradient),
so in gradient mode a forward hook on each layer's self-attention recomputes the block explicitly
(q, k, v from in_proj_weight; A = softmax(q k^T / sqrt(d)); A V; out_proj), checks it against the
module's own output and returns it in its place: A is then the tensor the rest of the network uses.
The gradients come from one torch.autograd.grad(y, [A_0, ..., A_{L-1}]): the result is in the order
of that list, so layer l's gradient is paired with layer l's attention (backward hooks fire last
layer first; collecting them by arrival is vit-explain's issue #6).
The no-grad capture (capture/vit.py) is unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .vit import attention_modules

TINY = 2.0 ** -60  # products below this set to 0 (denormal chains are ~80x slower; ARCHITECTURE.md)


class RecomputeMismatch(RuntimeError):
    """The explicit attention does not reproduce the module's output: the model is not plain MHA."""


def explicit_attention(mha: nn.MultiheadAttention, x: torch.Tensor):
    """(out, A) for self-attention of x (B, N, E), batch first; A (B, heads, N, N), rows = queries."""
    if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
        raise TypeError("gradient capture needs self-attention with one in_proj_weight")
    b, n, e = x.shape
    h = mha.num_heads
    d = e // h
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)  # (B, N, 3E)
    q, k, v = qkv.reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)  # each (B, heads, N, d)
    a = torch.softmax((q * d ** -0.5) @ k.transpose(-2, -1), dim=-1)  # (B, heads, N, N)
    out = (a @ v).transpose(1, 2).reshape(b, n, e)
    return mha.out_proj(out), a


@contextmanager
def explicit_attention_hooks(model: nn.Module, store: dict):
    """Within the block, each layer's self-attention output is the explicit recompute; store[l] = A_l."""
    handles = []

    def make_hook(layer: int):
        def hook(module, args, kwargs, output):
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs.get("key", query)
            if key is not query:
                raise TypeError(f"layer {layer}: gradient capture supports self-attention only")
            if not module.batch_first:
                query = query.transpose(0, 1)
            out, a = explicit_attention(module, query)
            if not module.batch_first:
                out = out.transpose(0, 1)
            ref = output[0].detach()
            err = (out.detach() - ref).abs().max().item()
            tol = (1e-4 if ref.dtype == torch.float32 else 2e-2) * max(1.0, ref.abs().max().item())
            if not err <= tol:
                raise RecomputeMismatch(f"layer {layer}: the explicit attention differs from the model's "
                                        f"output by {err:.3g} (tolerance {tol:.3g}); this model's attention "
                                        "is not plain softmax(q k^T / sqrt(d)) V")
            store[layer] = a
            return out, None
        return hook

    try:
        for i, mha in enumerate(attention_modules(model)):
            handles.append(mha.register_forward_hook(make_hook(i), with_kwargs=True))
        yield store
    finally:
        for hd in handles:
            hd.remove()


def score_of(logits: torch.Tensor, target: int, contrast: int = -1) -> torch.Tensor:
    y = logits[0, target]
    return y - logits[0, contrast] if contrast >= 0 else y


def attention_grads(loaded, model_input: np.ndarray, target: int, contrast: int = -1):
    """(logits (classes,) float32, A (L, H, N, N) float32, dA (L, H, N, N) float32), batch item 0.

    model_input: the (3, H, W) normalised array the analysis holds (exactly what the model saw)."""
    from ..models.devices import autocast, run_with_oom_fallback

    def run(loaded):
        store: dict = {}
        x = torch.from_numpy(np.ascontiguousarray(model_input)).unsqueeze(0).to(loaded.device)
        x.requires_grad_(True)  # so every A is on the graph even when parameters are frozen
        with torch.enable_grad(), autocast(loaded), explicit_attention_hooks(loaded.module, store):
            logits = loaded.module(x)
            if logits is None or logits.ndim != 2:
                raise ValueError("this model has no classifier head: class-specific methods need class scores")
            y = score_of(logits, target, contrast)
            layers = [store[i] for i in range(len(store))]  # keyed by layer, never by arrival
            grads = torch.autograd.grad(y, layers)  # frees the graph
        attn = torch.stack([a[0].detach() for a in layers]).float().cpu()
        grad = torch.stack([g[0] for g in grads]).float().cpu()
        return logits[0].detach().float().cpu().numpy(), attn.numpy(), grad.numpy()

    return run_with_oom_fallback(run, loaded)


def weighted(attn: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A * dA per layer and head, float32, tiny values flushed to 0."""
    p = attn * grad
    p[np.abs(p) < TINY] = 0.0
    return p


def vit_products(analysis, target: int = -1, contrast: int = -1):
    """(P (L, H, N, N) float32 = A * dA for the target's score, Target): one backward per target,
    cached on the analysis (vitviz.core.gradients)."""
    from ..gradients import cached_backward, class_target, model_of

    t = class_target(analysis, target, contrast)

    def compute():
        logits, attn, grad = attention_grads(model_of(analysis), analysis.model_input, t.index, t.contrast)
        return weighted(attn, grad)

    return cached_backward(analysis, ("vit", t.index, t.contrast), compute), t
