"""The errors of image loading (files, arrays, tensors): they name the source and the reason."""
from __future__ import annotations


class ImageLoadError(ValueError):
    """The image could not be opened; the message says which file and why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"Cannot open image {source!r}: {reason}")


class ImageArrayError(ImageLoadError):
    """A numpy array or torch tensor that is not an image; the message names its shape and dtype and
    what is accepted."""
