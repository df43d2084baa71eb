"""Each Swin block's window attention A_b and its gradient dy/dA_b for one target score y.

The same TorchFunctionMode as the no-grad capture (capture/swin.py) keeps the output of the one
F.softmax inside torchvision's shifted_window_attention, here with autograd on: that tensor is the one
multiplied with v, so its gradient is dy/dA. One torch.autograd.grad(y, [A_0, ..., A_{B-1}]) returns
the gradients in the order of that list (forward order, checked), never in backward-hook arrival order.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .grad_vit import TINY, score_of
from .swin import checked_layout, recording_blocks


@contextmanager
def live_window_attention(model, store: list):
    """Within the block, store gets (block index, layout, softmax tensor on the graph) per block."""
    def on_block(index, module, x, rec):
        store.append((index, checked_layout(index, module, x, rec), rec.softmax[0]))

    with recording_blocks(model, on_block):
        yield store


def window_attention_grads(loaded, model_input: np.ndarray, target: int, contrast: int = -1):
    """(logits (classes,), [A_b (windows, heads, n, n)], [dA_b]) float32 numpy, batch item 0."""
    from ..models.devices import autocast, run_with_oom_fallback

    def run(loaded):
        store: list = []
        x = torch.from_numpy(np.ascontiguousarray(model_input)).unsqueeze(0).to(loaded.device)
        x.requires_grad_(True)
        with torch.enable_grad(), autocast(loaded), live_window_attention(loaded.module, store):
            logits = loaded.module(x)
            if [s[0] for s in store] != list(range(len(store))):
                raise RuntimeError("Swin blocks ran in an unexpected order; cannot attribute their gradients")
            y = score_of(logits, target, contrast)
            grads = torch.autograd.grad(y, [s[2] for s in store])
        attn, grad = [], []
        for (_, layout, a), g in zip(store, grads):
            nw = layout.num_windows  # windows are batch-major: item 0 first
            attn.append(a[:nw].detach().float().cpu().numpy())
            grad.append(g[:nw].float().cpu().numpy())
        return logits[0].detach().float().cpu().numpy(), attn, grad

    return run_with_oom_fallback(run, loaded)


def swin_products(analysis, target: int = -1, contrast: int = -1):
    """([P_b = A_b * dA_b (windows, heads, n, n) float32 per block], Target), cached per target."""
    from ..gradients import cached_backward, class_target, model_of

    t = class_target(analysis, target, contrast)

    def compute():
        _, attn, grad = window_attention_grads(model_of(analysis), analysis.model_input, t.index, t.contrast)
        out = []
        for a, g in zip(attn, grad):
            p = a * g
            p[np.abs(p) < TINY] = 0.0
            out.append(p)
        return out

    return cached_backward(analysis, ("swin", t.index, t.contrast), compute), t
