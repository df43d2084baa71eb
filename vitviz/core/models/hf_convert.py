"""Models from the Hugging Face hub cache, built as vitviz's own models with their weights mapped
(hf_vit: ViT/DeiT/DINO/DINOv2 -> TokenViT; hf_swin: Swin/Swin V2 -> torchvision; hf_detr: DETR ->
vitviz DETR). Reads config.json and the weights files only: transformers is not needed to run them.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from .errors import CheckpointError
from .hf_cache import HF_FAMILIES, read_json, weights_file


def _module_for(model_type: str):
    from . import hf_detr, hf_swin, hf_vit

    family = HF_FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(f"model_type {model_type!r}: vitviz opens Hugging Face "
                              f"{', '.join(sorted(HF_FAMILIES))} models")
    return {"vit": hf_vit, "swin": hf_swin, "detr": hf_detr}[family]


def build(*, snapshot: str, input_size: int = 224):
    """The registry's builder for hub models: random weights in the config's shape."""
    cfg = read_json(Path(snapshot) / "config.json")
    return _module_for(cfg.get("model_type", "")).build(cfg, input_size)


def read_weights(snapshot: Path) -> dict[str, Tensor]:
    """All tensors of the snapshot (sharded files joined), safe readers only."""
    from .state_files import read_state_dict

    path = weights_file(snapshot)
    if path is None:
        raise CheckpointError(f"{snapshot} has no model.safetensors or pytorch_model.bin")
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(snapshot / shard))
        return state
    return read_state_dict(path)


def converted_state(snapshot: str, module) -> dict[str, Tensor]:
    """The snapshot's weights in the keys of `module` (the model `build` made for it)."""
    snap = Path(snapshot)
    cfg = read_json(snap / "config.json")
    mt = cfg.get("model_type", "")
    conv = _module_for(mt)
    state = read_weights(snap)
    if conv.__name__.endswith("hf_vit"):
        return conv.convert_state(cfg, state, module.image_size)
    if conv.__name__.endswith("hf_swin"):
        return conv.convert_state(cfg, state, module.state_dict())
    return conv.convert_state(cfg, state)
