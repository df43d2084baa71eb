"""Images held in memory as numpy arrays or torch tensors -> the same RGB PIL image a file gives.

Each array becomes the 8-bit image Pillow would decode from the same pixels saved as a PNG, and then
goes through image._to_rgb like a file: so an array and its PNG give the same model input.

numpy: H x W (grey), H x W x 1, H x W x 2 (grey + alpha), H x W x 3, H x W x 4 (alpha composited over
white, as for files). uint8; uint16 (grey is stretched to its own range like a 16-bit grey PNG;
colour keeps the high byte, as Pillow decodes 16-bit RGB PNGs); float in [0, 1] (rounded to 8 bits).
torch: C x H x W (or H x W) with C in 1-4, uint8 or float in [0, 1], on any device.
"""
from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from .image_errors import ImageArrayError
from .rgb import MAX_PIXELS, to_rgb

# Floats this far outside [0, 1] are taken as rounding (e.g. a resize overshooting by 1e-7) and clipped.
FLOAT_TOLERANCE = 1e-3

_ACCEPTED_NUMPY = ("numpy arrays H x W, H x W x 1, H x W x 2, H x W x 3 or H x W x 4 "
                   "of uint8, uint16 or float in [0, 1]")
_ACCEPTED_TORCH = "torch tensors C x H x W (C = 1, 2, 3 or 4) or H x W, uint8 or float in [0, 1]"
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def is_tensor(obj) -> bool:
    """True for a torch.Tensor, without importing torch (an object can only be one if torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _refuse(kind: str, shape, dtype, why: str, accepted: str):
    raise ImageArrayError(f"{kind} {tuple(shape)} {dtype}", f"{why}; accepted: {accepted}")


def array_to_image(arr: np.ndarray, *, kind: str = "numpy array", accepted: str = _ACCEPTED_NUMPY,
                   label: tuple | None = None) -> Image.Image:
    """An RGB PIL image from a channel-last numpy array (see the module notes), or ImageArrayError.
    label: (shape, dtype) to name in errors, when the caller received something else (a tensor)."""
    shape, dtype = arr.shape, arr.dtype
    said_shape, said_dtype = label or (shape, dtype)

    def refuse(why: str):
        _refuse(kind, said_shape, said_dtype, why, accepted)

    if arr.ndim == 3 and shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        refuse(f"{arr.ndim}-D is not an image")
    if arr.ndim == 3 and shape[-1] not in _MODES:
        refuse(f"{shape[-1]} channels")
    if arr.size == 0:
        refuse("it is empty")
    if shape[0] * shape[1] > MAX_PIXELS:
        refuse(f"it is too large ({shape[1]}x{shape[0]} pixels, limit {MAX_PIXELS:,})")
    channels = 1 if arr.ndim == 2 else shape[-1]
    if dtype == np.uint8:
        u8 = arr
    elif dtype == np.uint16:
        if channels == 1:  # exactly what a 16-bit grey PNG becomes (range stretched in _to_rgb)
            return to_rgb(Image.fromarray(np.ascontiguousarray(arr)))  # mode I;16
        u8 = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(dtype, np.floating):
        x = arr.astype(np.float64, copy=False)
        finite = np.isfinite(x)
        if not finite.all():
            refuse(f"it holds {int((~finite).sum())} NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
            refuse(f"float values must lie in [0, 1], these span [{lo:.4g}, {hi:.4g}] "
                   "(divide 0-255 data by 255, or pass it as uint8)")
        u8 = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif np.issubdtype(dtype, np.complexfloating):
        refuse("complex values are not pixels")
    else:
        refuse(f"dtype {dtype} is not accepted (convert with .astype(np.uint8) if the values are 0-255)")
    return to_rgb(Image.fromarray(np.ascontiguousarray(u8), _MODES[channels]))


def tensor_to_image(t) -> Image.Image:
    """An RGB PIL image from a torch tensor C x H x W or H x W (any device), or ImageArrayError."""
    import torch

    shape, dtype = tuple(t.shape), str(t.dtype).replace("torch.", "")
    if t.dim() == 3:
        if shape[0] not in _MODES:
            _refuse("torch tensor", shape, dtype, f"{shape[0]} channels (tensors are channel-first, "
                    "C x H x W)", _ACCEPTED_TORCH)
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        why = (f"{t.dim()}-D is not one image" + (" (a batch: give list(tensor) to analyze_many)"
                                                  if t.dim() == 4 else ""))
        _refuse("torch tensor", shape, dtype, why, _ACCEPTED_TORCH)
    t = t.detach().to("cpu")
    if t.dtype == torch.uint8:
        arr = t.numpy()
    elif t.is_floating_point():
        arr = t.to(torch.float32).numpy()  # float16 / bfloat16 have no (or a slow) numpy form
    else:
        _refuse("torch tensor", shape, dtype, f"dtype {dtype} is not accepted", _ACCEPTED_TORCH)
    return array_to_image(arr, kind="torch tensor", accepted=_ACCEPTED_TORCH, label=(shape, dtype))
