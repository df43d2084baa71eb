"""`timm:NAME` as a registry name ("timm:vit_small_patch16_224", "timm:deit_small_patch16_224.fb_in1k").
Resolving one imports timm (the `vitviz[timm]` extra); importing this module does not."""
from __future__ import annotations

from .registry import register_resolver

PREFIX = "timm:"


def accepts(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX) and len(name) > len(PREFIX)


def spec_for(name: str):
    from .timm_models import timm_spec

    return timm_spec(name[len(PREFIX):])


register_resolver(accepts, spec_for)
