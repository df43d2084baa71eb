"""Turn a loaded image into the model's input tensor, together with the exact geometry of that step."""
from __future__ import annotations

from PIL import Image

from .geometry import InputTransform
from .models.registry import Preprocess


def input_transform(width: int, height: int, pre: Preprocess) -> InputTransform:
    if pre.kind == "center_crop":
        t = InputTransform.resize_center_crop(width, height, pre.resize, pre.size)
        return t if pre.convention == "torchvision" else _center_crop(t, pre.size, pre.convention)
    if pre.kind == "resize_crop":  # Hugging Face DeiT: a square resize, then a center crop
        t = InputTransform.resize_exact(width, height, pre.resize, pre.resize)
        return _center_crop(t, pre.size, pre.convention)
    if pre.kind == "resize":
        return InputTransform.resize_exact(width, height, pre.size, pre.size)
    if pre.kind == "resize_short":
        return InputTransform.resize_short(width, height, pre.size, pre.max_size)
    raise ValueError(f"unknown preprocessing {pre.kind!r}")


def _center_crop(t: InputTransform, crop: int, convention: str) -> InputTransform:
    """`t` followed by a crop x crop center crop at offset int(round(m / 2)) of the margin m
    (torchvision) or int(m / 2) (Hugging Face's processors)."""
    from dataclasses import replace

    rw, rh = round(t.orig_w * t.scale_x), round(t.orig_h * t.scale_y)
    split = (lambda m: int(round(m / 2.0))) if convention == "torchvision" else (lambda m: int(m / 2.0))
    return replace(t, input_w=crop, input_h=crop, offset_x=float(split(rw - crop)), offset_y=float(split(rh - crop)))


_INTERPOLATION = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST"}


def prepare(image: Image.Image, pre: Preprocess):
    """(input tensor [3, H, W] float32, normalised; InputTransform original -> input pixels).

    Uses torchvision's functional resize/crop (bilinear, antialiased) - the same ops as the weights'
    own transforms - with sizes taken from `input_transform`, so the geometry is the pipeline's."""
    import torch
    from torchvision.transforms import functional as F

    t = input_transform(image.width, image.height, pre)
    x = F.pil_to_tensor(image)  # (3, h, w) uint8
    rw, rh = round(t.orig_w * t.scale_x), round(t.orig_h * t.scale_y)
    mode = getattr(F.InterpolationMode, _INTERPOLATION[getattr(pre, "resample", "bilinear")])
    if getattr(pre, "convention", "torchvision") == "transformers":
        from torchvision.transforms.v2 import functional as F2  # what HF's processors call

        x = F2.resize(x, [rh, rw], interpolation=mode, antialias=True)
    else:
        x = F.resize(x, [rh, rw], interpolation=mode, antialias=True)
    if pre.kind in ("center_crop", "resize_crop"):  # at the geometry's own offsets (zero-padded if outside)
        x = F.crop(x, int(t.offset_y), int(t.offset_x), t.input_h, t.input_w)
    x = x.to(torch.float32) / 255.0
    x = F.normalize(x, list(pre.mean), list(pre.std))
    if x.shape[-2:] != (t.input_h, t.input_w):  # resize_short: pad bottom/right (pad_to grids)
        x = torch.nn.functional.pad(x, (0, t.input_w - x.shape[-1], 0, t.input_h - x.shape[-2]))
    return x, t
