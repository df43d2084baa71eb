"""Loading user images with Pillow into plain RGB, with errors that name the file and the reason."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .image_errors import ImageArrayError, ImageLoadError  # noqa: F401 (public here)
from .rgb import MAX_PIXELS, to_rgb as _to_rgb

# Any = a torch.Tensor (C x H x W); not named here so that importing this module does not import torch
ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, Any]



def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Open `source` (path, bytes, a PIL image, a numpy array or a torch tensor) as an RGB image
    with EXIF orientation applied.

    Animated files give their first frame. Raises ImageLoadError for anything that is not a
    readable image (missing, a directory, empty, truncated, not an image, too large), and its
    subclass ImageArrayError for arrays and tensors that are not images (see image_arrays).
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, np.ndarray):
        from .image_arrays import array_to_image

        return array_to_image(source)
    from .image_arrays import is_tensor

    if is_tensor(source):
        from .image_arrays import tensor_to_image

        return tensor_to_image(source)
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise ImageLoadError(repr(source)[:80], f"a {type(source).__name__} is not an image; give a "
                             "path, bytes, a PIL image, a numpy array or a torch tensor")
    label = name or (str(source) if not isinstance(source, bytes) else "<clipboard data>")
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError(label, "the data is empty")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(label, "no such file")
        if path.is_dir():
            raise ImageLoadError(label, "it is a folder, not an image file")
        try:
            if path.stat().st_size == 0:
                raise ImageLoadError(label, "the file is empty")
            fp = open(path, "rb")
        except PermissionError:
            raise ImageLoadError(label, "permission denied") from None
        except OSError as exc:
            raise ImageLoadError(label, exc.strerror or str(exc)) from None
    try:
        with Image.open(fp) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageLoadError(
                    label, f"it is too large ({img.width}x{img.height} pixels, limit {MAX_PIXELS:,})"
                )
            img.seek(0)  # first frame of animated GIF/PNG/WebP
            img.load()
            out = ImageOps.exif_transpose(img) or img
            return _to_rgb(out.copy())
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(label, "it is not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(label, f"it is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated data as OSError("image file is truncated ...").
        raise ImageLoadError(label, f"the file is damaged or truncated ({exc})") from None
    finally:
        if not isinstance(source, bytes):
            fp.close()
