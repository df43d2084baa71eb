"""Where a model's pretrained weights come from and whether they are on disk, without touching the
network: torchvision's weights enums, or the URL table for checkpoints torchvision does not ship."""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoint_urls import CHECKPOINT_URLS
from .hub_dirs import hub_checkpoint_dir  # noqa: F401 (public here too)
from .registry import ModelSpec


def weights_enum(spec: ModelSpec):
    """The torchvision weights enum member named by the spec, or None."""
    if not spec.weights or "://" in spec.weights:
        return None
    import torchvision.models as tvm

    enum_name, member = spec.weights.split(".")
    return getattr(getattr(tvm, enum_name), member)


def weights_url(spec: ModelSpec) -> str | None:
    """The URL the spec's pretrained weights are published at: the torchvision enum's, a URL given
    as `weights`, or the download table's entry for the spec's name."""
    if spec.weights and "://" in spec.weights:
        return spec.weights
    w = weights_enum(spec)
    return w.url if w is not None else CHECKPOINT_URLS.get(spec.name)


def cached_weights_path(spec: ModelSpec) -> Path | None:
    """Where the download of these weights lives, if it is already there."""
    url = weights_url(spec)
    if url is None:
        return None
    path = hub_checkpoint_dir() / os.path.basename(url)
    return path if path.is_file() else None


def weights_state(spec: ModelSpec) -> str:
    """"cached" (pretrained on disk), "downloadable" (would need the network) or "random" (none exist)."""
    if spec.source:
        from .external import external_weights_state

        return external_weights_state(spec)
    if weights_url(spec) is None:
        return "random"
    return "cached" if cached_weights_path(spec) else "downloadable"


def class_names(spec: ModelSpec) -> list[str] | None:
    w = weights_enum(spec)
    return list(w.meta["categories"]) if w is not None and "categories" in w.meta else None
