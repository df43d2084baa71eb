"""The offline demo models: small ViT and Swin trained on vitviz's procedural shapes scenes,
their weights shipped in resources/demo/ (see vitviz.demo.models and vitviz.demo.train).

Imported by the registry on first use; plain data, no torch.
"""
from __future__ import annotations

from .registry import ModelSpec, Preprocess, register

DEMO_GROUP = "Demo (shapes)"
_CLASSES = "vitviz.demo.scenes:CLASSES"

DEMO_SPECS = (
    ModelSpec("demo_vit", "vit", "Demo ViT (shapes)", "vitviz.demo.models:build_demo_vit",
              Preprocess("resize", 64), classes=_CLASSES, group=DEMO_GROUP,
              bundled="demo/demo_vit.safetensors"),
    ModelSpec("demo_swin", "swin", "Demo Swin (shapes)", "vitviz.demo.models:build_demo_swin",
              Preprocess("resize", 64), classes=_CLASSES, group=DEMO_GROUP,
              bundled="demo/demo_swin.safetensors"),
)

for _spec in DEMO_SPECS:
    register(_spec)
