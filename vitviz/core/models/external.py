"""Weights of models that live outside vitviz's own table, by ModelSpec.source: "hf" (a snapshot
in the Hugging Face hub cache) and "timm" (timm's hub-cache repositories; its weights take the checkpoint path, see
loading._pretrained_state). One place the loader asks, so it needs no knowledge of the layouts."""
from __future__ import annotations

from pathlib import Path


def external_state(spec, module, download=False):
    """(state in `module`'s keys or None, source label, notes). None with a note when the weights
    are not on disk and no download was asked for."""
    if spec.source == "hf":
        from .hf_cache import weights_file
        from .hf_convert import converted_state

        snapshot = Path(spec.builder_kwargs["snapshot"])
        if weights_file(snapshot) is None:  # vitviz does not fetch hub repositories itself (yet)
            return None, None, [f"{spec.name} has no weights file in the hub cache ({snapshot}); running "
                                "UNTRAINED random weights. Fetch them with `huggingface-cli download "
                                f"{spec.name}` (pip install huggingface_hub)."]
        return converted_state(str(snapshot), module), spec.name, []
    if spec.source == "clip":  # open_clip / transformers CLIP image towers (clip_specs)
        from .clip_specs import clip_state

        return clip_state(spec, module)
    raise ValueError(f"unknown model source {spec.source!r}")


def external_weights_state(spec) -> str:
    """"cached" or "downloadable", offline."""
    if spec.source == "hf":
        from .hf_cache import weights_file

        return "cached" if weights_file(Path(spec.builder_kwargs["snapshot"])) else "downloadable"
    if spec.source == "timm":
        from .timm_models import timm_weights_file

        return "cached" if timm_weights_file(spec) else "downloadable"
    if spec.source == "clip":
        from .clip_specs import weights_on_disk

        return weights_on_disk(spec)
    return "random"
