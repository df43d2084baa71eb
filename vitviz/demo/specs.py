"""The offline demo models: small ViT, Swin and DETR trained on vitviz's procedural shapes scenes,
their weights shipped in resources/demo/ (see vitviz.demo.models and vitviz.demo.train).

Registered from outside core through the `vitviz.models` entry point (pyproject.toml), which
the registry loads on first use: core names no demo module. Plain data, no torch.
"""
from __future__ import annotations

from vitviz.core.models.registry import ModelSpec, Preprocess, register

DEMO_GROUP = "Demo (shapes)"
_CLASSES = "vitviz.demo.scenes:CLASSES"

DEMO_SPECS = (
    ModelSpec("demo_vit", "vit", "Demo ViT (shapes)", "vitviz.demo.models:build_demo_vit",
              Preprocess("resize", 64), classes=_CLASSES, group=DEMO_GROUP,
              bundled="demo/demo_vit.safetensors"),
    ModelSpec("demo_swin", "swin", "Demo Swin (shapes)", "vitviz.demo.models:build_demo_swin",
              Preprocess("resize", 64), classes=_CLASSES, group=DEMO_GROUP,
              bundled="demo/demo_swin.safetensors"),
    # square scenes stay 128 x 128; other images keep their aspect (long side at most 213)
    ModelSpec("demo_detr", "detr", "Demo DETR (shapes)", "vitviz.demo.models:build_demo_detr",
              Preprocess("resize_short", 128, max_size=213), classes=_CLASSES, group=DEMO_GROUP,
              bundled="demo/demo_detr.safetensors"),
)

for _spec in DEMO_SPECS:
    register(_spec)
