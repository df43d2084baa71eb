"""Many images: batched analysis (analyze_many), per-image reducers, folder runs."""
from __future__ import annotations

from .many import ImageFailure, ImageResult, analyze_many

__all__ = ["analyze_many", "ImageFailure", "ImageResult"]
