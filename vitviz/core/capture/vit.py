"""Capture every encoder layer's per-head attention from a torchvision VisionTransformer.

No torchvision code is edited: a forward pre-hook asks each layer's nn.MultiheadAttention for
per-head weights (need_weights=True, average_attn_weights=False) and a forward hook stores them.
Under eval + no_grad the model still takes the same fused path, so its outputs are unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .host import to_host


def attention_modules(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The self-attention module of every encoder layer, in order."""
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} is not a torchvision VisionTransformer")
    return [layer.self_attention for layer in layers]


@contextmanager
def capture_attention(model: nn.Module, dtype: np.dtype = np.float16,
                      whole_batch: bool = False) -> Iterator[list[np.ndarray]]:
    """Within the block, every forward appends one [heads, N, N] array per layer (batch item 0;
    with `whole_batch` the (batch, heads, N, N) array) to the yielded list; moved to host memory
    once, per layer, in `dtype`."""
    store: list[np.ndarray] = []
    handles = []

    def pre_hook(module, args, kwargs):
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return args, kwargs

    def hook(module, args, output):
        weights = output[1]  # (batch, heads, N, N), rows = queries
        store.append(to_host(weights if whole_batch else weights[0], dtype))

    try:
        for mha in attention_modules(model):
            handles.append(mha.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(mha.register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


def run(loaded, image, attention_dtype=np.float16):
    """Preprocess `image`, run the ViT once with capture, return a ViTAnalysis."""
    import time

    from ..analysis.vit import ViTAnalysis
    from ..geometry import TokenGrid
    from ..preprocess import prepare

    t0 = time.perf_counter()
    x, transform = prepare(image, loaded.preprocess)
    from ..models.devices import autocast, run_with_oom_fallback

    def forward(loaded):
        with torch.no_grad(), autocast(loaded), capture_attention(loaded.module, attention_dtype) as store:
            t1 = time.perf_counter()
            logits = loaded.module(x.unsqueeze(0).to(loaded.device))
            if loaded.device.startswith("cuda"):
                torch.cuda.synchronize()
            t2 = time.perf_counter()
        return store, logits, t1, t2

    # out of GPU memory: the model moves to the CPU and the forward runs again, with a note
    store, logits, t1, t2 = run_with_oom_fallback(forward, loaded)
    patch = loaded.module.patch_size
    attn = np.stack(store)  # (layers, heads, N, N)
    grid = TokenGrid(transform.input_h // patch, transform.input_w // patch, patch, patch, transform)
    prefix = attn.shape[-1] - len(grid)
    return ViTAnalysis(
        image=image, grid=grid, model_name=loaded.name, weights=loaded.weights_label,
        trained=loaded.trained, device=loaded.device, model_input=x.numpy(), attn=attn,
        logits=logits[0].float().cpu().numpy() if logits is not None else None,
        class_names=loaded.class_names, num_prefix_tokens=prefix, notes=list(loaded.notes),
        timings={"preprocess": t1 - t0, "forward": t2 - t1, "total": time.perf_counter() - t0},
        input_mean=loaded.preprocess.mean, input_std=loaded.preprocess.std)
