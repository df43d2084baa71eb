"""The DETR detection models (COCO, 91 class ids + no-object, 100 queries).

Pretrained weights are the official facebookresearch/detr checkpoints (detr-r50-e632da11.pth,
detr-r101-2c7b67e5.pth, detr-r50-dc5-f0fb7ef5.pth, detr-r101-dc5-a2e86def.pth), found by file name
in the torch hub cache (`<torch hub dir>/checkpoints/`) through the URL table keyed by model name,
vitviz.core.models.download.CHECKPOINT_URLS; when absent the model runs with random weights and a
note, as the ViTs do. Nothing is downloaded here. The checkpoints load strictly: vitviz's DETR has
the official module names (vitviz.core.models.detr).

Imported by the registry on first use; plain data, no torch at import (`build` imports it lazily).
"""
from __future__ import annotations

from .registry import ModelSpec, Preprocess, register

DETR_GROUP = "DETR (COCO)"
DETR_BUILDER = "vitviz.core.models.detr_specs:build"
COCO_NAMES = "vitviz.core.models.detr_data:COCO_CLASSES"
# DETR's evaluation transform: shorter side 800, longer side at most 1333, no crop
DETR_PREPROCESS = Preprocess("resize_short", 800, max_size=1333)

# registry name (= the DetrConfig preset it builds, and the key of its URL in download.py) -> label
DETR_LABELS: dict[str, str] = {
    "detr_resnet50": "DETR-R50",
    "detr_resnet101": "DETR-R101",
    "detr_resnet50_dc5": "DETR-R50-DC5",
    "detr_resnet101_dc5": "DETR-R101-DC5",
}


def build(preset: str = "detr_resnet50", **changes):
    """A randomly initialised DETR in eval mode: preset `preset` (vitviz.core.models.detr
    DETR_PRESETS) with DetrConfig fields overridden by `changes` (e.g. a small test model)."""
    from .detr import build_detr, detr_preset

    config = detr_preset(preset)
    return build_detr(config.with_changes(**changes) if changes else config)


def detr_spec(name: str, label: str, preprocess: Preprocess = DETR_PREPROCESS,
              group: str = DETR_GROUP, preset: str = "detr_resnet50", **changes) -> ModelSpec:
    """A DETR model spec building `preset` with DetrConfig `changes` (tests register small ones
    with a smaller `preprocess`). Pretrained weights come from download.CHECKPOINT_URLS[name]."""
    return ModelSpec(name, "detr", label, DETR_BUILDER, preprocess, weights=None,
                     builder_kwargs={"preset": preset, **changes}, classes=COCO_NAMES, group=group)


DETR_SPECS = tuple(detr_spec(name, label, preset=name) for name, label in DETR_LABELS.items())

for _spec in DETR_SPECS:
    register(_spec)
