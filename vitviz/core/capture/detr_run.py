"""analyze() for the DETR family: preprocess as DETR's evaluation does, run once with attention
capture (vitviz.core.capture.detr), and wrap the record in a DetrAnalysis with the exact geometry.

Geometry. DETR resizes with its own rounding (detr_data.detr_resize_hw: round the short side, floor
the long one), which can differ by a pixel from torchvision's `resized_size`, so the InputTransform
is built here from the sizes actually used: scale = resized / original per axis, no offset, input =
the (possibly padded) tensor. One image is not padded (as DETR's batch-of-one evaluation); with
`pad_to` > 1 the input is padded bottom/right to a multiple of it and the model gets the mask.
"""
from __future__ import annotations

import time

import numpy as np


def detr_input(image, short: int, max_size: int | None, pad_to: int = 1):
    """(tensor (3, H, W), mask (H, W) bool True = padding, InputTransform) for one PIL image."""
    from ..geometry import InputTransform
    from ..models.detr_data import detr_preprocess, pad_images

    pre = detr_preprocess(image, short, max_size)
    batch, mask = pad_images([pre.tensor], multiple=max(1, int(pad_to)))
    h, w = pre.orig_hw
    rh, rw = pre.tensor.shape[-2:]
    transform = InputTransform(w, h, int(batch.shape[-1]), int(batch.shape[-2]), rw / w, rh / h)
    return batch[0], mask[0], transform


def analysis_from_capture(capture, image, transform, model_input: np.ndarray, stride: int, **meta):
    """DetrAnalysis from a DetrCaptureResult; `meta` fills the remaining fields (model_name,
    weights, trained, device, class_names, notes, timings, input_mean, input_std)."""
    from ..analysis.detr import DetrAnalysis
    from ..geometry import TokenGrid

    rows, cols = capture.feat_hw
    grid = TokenGrid(rows, cols, float(stride), float(stride), transform)
    return DetrAnalysis(
        image=image, grid=grid, model_input=model_input, logits=capture.logits,
        boxes=capture.boxes, enc_attn=capture.enc_attn, dec_self=capture.dec_self,
        dec_cross=capture.dec_cross, pad_mask=np.asarray(capture.pad_mask, bool), stride=stride,
        layer_logits=capture.layer_logits, layer_boxes=capture.layer_boxes, **meta)


def model_stride(model, input_hw: tuple[int, int], feat_hw: tuple[int, int]) -> int:
    """Input pixels per feature cell: the config's (32, or 16 for DC5), else inferred."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "stride"):
        return int(config.stride)
    return int(round(input_hw[0] / feat_hw[0]))


def run(loaded, image, attention_dtype=np.float16, *, pad_to: int = 1):
    """Preprocess `image` (DETR's resize_short), run DETR once with capture, return a DetrAnalysis."""
    from .detr import run_detr_with_capture

    pre = loaded.preprocess
    if pre.kind != "resize_short":
        raise ValueError(f"DETR expects resize_short preprocessing, not {pre.kind!r}")
    t0 = time.perf_counter()
    x, mask, transform = detr_input(image, pre.size, pre.max_size, pad_to)
    t1 = time.perf_counter()
    from ..models.devices import autocast, run_with_oom_fallback

    def forward(lm):  # the model's device is read afresh: after a GPU OOM it is the CPU
        with autocast(lm):
            return run_detr_with_capture(lm.module, x, mask, attention_dtype)

    capture = run_with_oom_fallback(forward, loaded)
    t2 = time.perf_counter()
    stride = model_stride(loaded.module, capture.input_hw, capture.feat_hw)
    return analysis_from_capture(
        capture, image, transform, x.numpy(), stride,
        model_name=loaded.name, weights=loaded.weights_label, trained=loaded.trained,
        device=loaded.device, class_names=loaded.class_names, notes=list(loaded.notes),
        timings={"preprocess": t1 - t0, "forward": t2 - t1, "total": time.perf_counter() - t0},
        input_mean=pre.mean, input_std=pre.std)
