"""Batched forwards with attention capture: many preprocessed images -> one analysis each, the same
objects (and, to float rounding, the same numbers) as analyze() gives one image at a time.

The family capture modules keep batch item 0 only, so the batched hooks live here: ViT's per-head
MHA weights and DETR's attention stores for every item, Swin's softmax outputs split back per image
(windows are batch-major). Families without a batched forward here run image by image through the
family's own runner, so a new family works in analyze_many before it is batched.
"""
from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np


@dataclass
class Prepared:
    """One image, decoded and preprocessed (in a DataLoader worker), ready to batch."""

    index: int  # position in the input sequence
    source: str  # what the image was, for messages and result rows
    image: Any  # PIL RGB image: the analysis's `image`
    tensor: Any  # (3, H, W) float32, normalised: exactly the model input
    transform: Any  # geometry.InputTransform original -> input pixels
    mask: Any = None  # DETR: (H, W) bool padding mask
    seconds: float = 0.0  # decode + preprocess time


def prepare_item(index: int, source: str, image, pre, family: str) -> Prepared:
    """Preprocess one loaded image the way the family's runner does."""
    t0 = time.perf_counter()
    if family == "detr":
        from ..capture.detr_run import detr_input

        x, mask, transform = detr_input(image, pre.size, pre.max_size, 1)
    else:
        from ..preprocess import prepare

        x, transform = prepare(image, pre)
        mask = None
    return Prepared(index, source, image, x, transform, mask, time.perf_counter() - t0)


def _meta(loaded, prep: Prepared, forward_seconds: float) -> dict:
    return dict(model_name=loaded.name, weights=loaded.weights_label, trained=loaded.trained,
                device=loaded.device, class_names=loaded.class_names, notes=list(loaded.notes),
                timings={"preprocess": prep.seconds, "forward": forward_seconds,
                         "total": prep.seconds + forward_seconds},
                input_mean=loaded.preprocess.mean, input_std=loaded.preprocess.std)


def _stack(items: list[Prepared], device: str):
    import torch

    return torch.stack([p.tensor for p in items]).to(device)


def _timed(loaded, fn: Callable[[], Any]) -> tuple[Any, float]:
    import torch

    t0 = time.perf_counter()
    out = fn()
    if loaded.device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- ViT


def _vit_capture(model, dtype):
    """capture.vit.capture_attention keeping every layer's (batch, heads, N, N)."""
    from ..capture.vit import capture_attention

    return capture_attention(model, dtype, whole_batch=True)


def vit_batch(loaded, items: list[Prepared], dtype) -> list:
    import torch

    from ..analysis.vit import ViTAnalysis
    from ..geometry import TokenGrid
    from ..models.devices import autocast, run_with_oom_fallback

    def forward(lm):  # reads lm.device afresh: after a GPU OOM it is the CPU
        with torch.no_grad(), autocast(lm), _vit_capture(lm.module, dtype) as store:
            x = _stack(items, lm.device)
            logits, seconds = _timed(lm, lambda: lm.module(x))
        return store, logits, seconds

    store, logits, seconds = run_with_oom_fallback(forward, loaded)
    patch = loaded.module.patch_size
    out = []
    for b, p in enumerate(items):
        attn = np.stack([layer[b] for layer in store])  # (layers, heads, N, N), its own memory
        t = p.transform
        grid = TokenGrid(t.input_h // patch, t.input_w // patch, patch, patch, t)
        out.append(ViTAnalysis(
            image=p.image, grid=grid, model_input=p.tensor.numpy(), attn=attn,
            logits=None if logits is None else logits[b].float().cpu().numpy(),
            num_prefix_tokens=attn.shape[-1] - len(grid), **_meta(loaded, p, seconds / len(items))))
    return out


# --------------------------------------------------------------------------------------------- Swin


@contextmanager
def _swin_capture(model, dtype) -> Iterator[list]:
    """Like capture.swin.capture_window_attention, keeping every image: per block
    (index, layout, (batch, windows, heads, n, n))."""
    from ..capture.host import to_host
    from ..capture.swin import checked_layout, recording_blocks

    store: list = []

    def on_block(index, module, x, rec):
        layout = checked_layout(index, module, x, rec)
        host = to_host(rec.softmax[0], dtype)  # windows are batch-major
        store.append((index, layout, host.reshape(x.shape[0], layout.num_windows, *host.shape[1:])))

    with recording_blocks(model, on_block):
        yield store


def swin_batch(loaded, items: list[Prepared], dtype) -> list:
    import torch
    from torchvision.models.swin_transformer import ShiftedWindowAttentionV2

    from ..analysis.swin import SwinAnalysis, SwinBlock
    from ..capture.swin import relative_position_biases, stage0_grid, swin_blocks
    from ..models.devices import autocast, run_with_oom_fallback

    def forward(lm):
        with torch.no_grad(), autocast(lm), _swin_capture(lm.module, dtype) as store:
            x = _stack(items, lm.device)
            logits, seconds = _timed(lm, lambda: lm.module(x))
        return store, logits, seconds

    store, logits, seconds = run_with_oom_fallback(forward, loaded)
    blocks = swin_blocks(loaded.module)
    if [s[0] for s in store] != list(range(len(blocks))):
        raise RuntimeError("Swin blocks ran in an unexpected order; cannot attribute their attention")
    info = [SwinBlock(stage, block, i, int(m.num_heads), store[i][1], tuple(int(s) for s in m.shift_size))
            for i, (stage, block, m) in enumerate(blocks)]
    rel_bias = relative_position_biases(loaded.module)  # the model's, the same for every image
    version = 2 if isinstance(blocks[0][2], ShiftedWindowAttentionV2) else 1
    out = []
    for b, p in enumerate(items):
        grid = stage0_grid(loaded.module, p.transform)
        for blk in info:
            if blk.feature_size != grid.coarsen(2 ** blk.stage).shape:
                raise RuntimeError(f"stage {blk.stage} feature map {blk.feature_size} does not match its "
                                   f"token grid {grid.coarsen(2 ** blk.stage).shape}")
        out.append(SwinAnalysis(
            image=p.image, grid=grid, model_input=p.tensor.numpy(), blocks=info,
            attn=[np.ascontiguousarray(s[2][b]) for s in store], rel_bias=rel_bias,
            logits=logits[b].float().cpu().numpy(), version=version,
            **_meta(loaded, p, seconds / len(items))))
    return out


# --------------------------------------------------------------------------------------------- DETR


def detr_batch(loaded, items: list[Prepared], dtype) -> list:
    """Same-size DETR inputs as one batch with DETR's own padding mask (all False: nothing is padded,
    so each result equals its batch-of-one run)."""
    import torch

    from ..capture.detr import DetrCaptureResult, capture_detr_attention
    from ..capture.detr_run import analysis_from_capture, model_stride
    from ..models.devices import autocast, run_with_oom_fallback

    def forward(lm):
        x = _stack(items, lm.device)
        mask = torch.stack([p.mask for p in items]).to(lm.device)
        with torch.no_grad(), autocast(lm), ExitStack() as stack:
            stores = [stack.enter_context(capture_detr_attention(lm.module, dtype, item=b))
                      for b in range(len(items))]
            result, seconds = _timed(lm, lambda: lm.module(x, mask, return_aux=True))
        return stores, result, seconds

    stores, result, seconds = run_with_oom_fallback(forward, loaded)

    def host(t) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).numpy()

    layers = [*result.get("aux_outputs", []), result]
    out = []
    for b, (p, store) in enumerate(zip(items, stores)):
        if not store.complete() or store.feat_mask is None:
            raise RuntimeError("some attention layers did not run; is this a vitviz DETR?")
        cap = DetrCaptureResult(
            logits=host(result["pred_logits"][b]), boxes=host(result["pred_boxes"][b]),
            enc_attn=store.enc_attn, dec_self=store.dec_self, dec_cross=store.dec_cross,
            feat_hw=tuple(store.feat_mask.shape), pad_mask=store.feat_mask,
            input_hw=tuple(p.tensor.shape[-2:]),
            layer_logits=np.stack([host(o["pred_logits"][b]) for o in layers]),
            layer_boxes=np.stack([host(o["pred_boxes"][b]) for o in layers]))
        stride = model_stride(loaded.module, cap.input_hw, cap.feat_hw)
        out.append(analysis_from_capture(cap, p.image, p.transform, p.tensor.numpy(), stride,
                                         **_meta(loaded, p, seconds / len(items))))
    return out


# ------------------------------------------------------------------------------------------ dispatch

BATCHED = {"vit": vit_batch, "swin": swin_batch, "detr": detr_batch}


def run_batch(loaded, items: list[Prepared], dtype=np.float16) -> list:
    """One analysis per prepared item, in order: one batched forward per run of equal-sized inputs
    for the families above (ViT and Swin inputs always are; DETR's follow the image size, and
    padding would change its results), the family's own one-image runner otherwise."""
    fn = BATCHED.get(loaded.spec.family)
    if fn is not None:
        out: list = []
        start = 0
        while start < len(items):
            end = start + 1
            while end < len(items) and items[end].tensor.shape == items[start].tensor.shape:
                end += 1
            out += fn(loaded, items[start:end], np.dtype(dtype))
            start = end
        return out
    from ..families import get_family

    runner = get_family(loaded.spec.family).runner()
    return [runner(loaded, p.image, np.dtype(dtype)) for p in items]
