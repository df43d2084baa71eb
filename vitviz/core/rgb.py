"""Pillow images of any mode -> RGB, and the size limit every image source shares."""
from __future__ import annotations

from PIL import Image

# Pillow's own decompression-bomb guard stays on; we only turn its warning into an error.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 178_956_970


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode Pillow can decode -> RGB. Transparency is composited over white (a slide background)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: stretch the real range to 8 bits instead of clipping to white.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")
