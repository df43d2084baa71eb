"""torchvision weights: find them in the torch hub cache without touching the network."""
from __future__ import annotations

import os
from pathlib import Path

from .registry import ModelSpec


def weights_enum(spec: ModelSpec):
    """The torchvision weights enum member named by the spec, or None."""
    if not spec.weights:
        return None
    import torchvision.models as tvm

    enum_name, member = spec.weights.split(".")
    return getattr(getattr(tvm, enum_name), member)


def hub_checkpoint_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(spec: ModelSpec) -> Path | None:
    """Where torchvision's download of these weights lives, if it is already there."""
    w = weights_enum(spec)
    if w is None:
        return None
    path = hub_checkpoint_dir() / os.path.basename(w.url)
    return path if path.is_file() else None


def weights_state(spec: ModelSpec) -> str:
    """"cached" (pretrained on disk), "downloadable" (would need the network) or "random" (none exist)."""
    if not spec.weights:
        return "random"
    return "cached" if cached_weights_path(spec) else "downloadable"


def class_names(spec: ModelSpec) -> list[str] | None:
    w = weights_enum(spec)
    return list(w.meta["categories"]) if w is not None and "categories" in w.meta else None
