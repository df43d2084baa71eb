"""Turn a loaded image into the model's input tensor, together with the exact geometry of that step."""
from __future__ import annotations

from PIL import Image

from .geometry import InputTransform
from .models.registry import Preprocess


def input_transform(width: int, height: int, pre: Preprocess) -> InputTransform:
    if pre.kind == "center_crop":
        return InputTransform.resize_center_crop(width, height, pre.resize, pre.size)
    if pre.kind == "resize":
        return InputTransform.resize_exact(width, height, pre.size, pre.size)
    if pre.kind == "resize_short":
        return InputTransform.resize_short(width, height, pre.size, pre.max_size)
    raise ValueError(f"unknown preprocessing {pre.kind!r}")


def prepare(image: Image.Image, pre: Preprocess):
    """(input tensor [3, H, W] float32, normalised; InputTransform original -> input pixels).

    Uses torchvision's functional resize/crop (bilinear, antialiased) - the same ops as the weights'
    own transforms - with sizes taken from `input_transform`, so the geometry is the pipeline's."""
    import torch
    from torchvision.transforms import functional as F

    t = input_transform(image.width, image.height, pre)
    x = F.pil_to_tensor(image)  # (3, h, w) uint8
    rw, rh = round(t.orig_w * t.scale_x), round(t.orig_h * t.scale_y)
    x = F.resize(x, [rh, rw], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    if pre.kind == "center_crop":
        x = F.center_crop(x, [t.input_h, t.input_w])
    x = x.to(torch.float32) / 255.0
    x = F.normalize(x, list(pre.mean), list(pre.std))
    if x.shape[-2:] != (t.input_h, t.input_w):  # resize_short: pad bottom/right (pad_to grids)
        x = torch.nn.functional.pad(x, (0, t.input_w - x.shape[-1], 0, t.input_h - x.shape[-2]))
    return x, t
