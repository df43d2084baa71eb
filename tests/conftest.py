"""Shared fixtures. Qt runs offscreen; nothing is downloaded; models use random weights."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep the torch hub cache inside the test session so a developer's real cache never changes results.
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".torch-home-unused"))

import numpy as np
import pytest
from PIL import Image

from tests.helpers import random_png
from vitviz.core.models.registry import ModelSpec, Preprocess, register

# A small ViT with the real torchvision class, so capture tests run in milliseconds.
TINY_VIT = ModelSpec(
    "test_tiny_vit", "vit", "Tiny ViT (tests)", "tests.helpers:build_tiny_vit",
    Preprocess("center_crop", 64, resize=72), classes="none", group="Tests")
register(TINY_VIT)


@pytest.fixture
def image_file(tmp_path):
    """A 120x90 random RGB PNG (test files with other needs define their own)."""
    return random_png(tmp_path / "img.png", (90, 120, 3), seed=5)


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="session")
def vit_b16_analysis():
    import vitviz

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "RGB")
    return vitviz.analyze(img, model="vit_b_16", weights="random")
