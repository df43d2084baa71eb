"""analyze_many keeps a batch's attention until its results are out: a batch that would not fit in
half the available memory runs smaller, and says so."""
from __future__ import annotations

import numpy as np
import pytest

import vitviz.core.memory_estimate as memory_estimate
from vitviz.core.api import get_model
from vitviz.core.batch import analyze_many
from vitviz.core.batch.memory import BatchMemoryWarning, fitting_batch_size, per_image_bytes


@pytest.fixture(scope="module")
def tiny_vit():
    return get_model("test_tiny_vit", "random", cache=False)


def test_per_image_bytes_counts_the_kept_attention_its_copy_and_the_transient(tiny_vit):
    # tests.helpers.build_tiny_vit: 3 layers, 4 heads, 64x64 input, 16 px patches -> 16 + 1 tokens
    layers, heads, n = 3, 4, 17
    kept = layers * heads * n * n * 2  # float16
    transient = 2 * heads * n * n * 4  # logits and softmax of one layer in float32
    per = per_image_bytes(tiny_vit, "float16")
    assert kept * 2 + transient <= per <= kept * 2 + transient + 2**20
    assert per_image_bytes(tiny_vit, "float32") - per == 2 * kept  # twice the bytes, in both copies


def test_batch_size_is_lowered_to_fit_with_a_warning(tiny_vit):
    per = per_image_bytes(tiny_vit)
    assert fitting_batch_size(tiny_vit, 16, available=per * 100) == 16  # fits: unchanged, no warning
    with pytest.warns(BatchMemoryWarning, match="running batches of 5"):
        assert fitting_batch_size(tiny_vit, 16, available=per * 10) == 5  # half of 10 images' worth
    with pytest.warns(BatchMemoryWarning):
        assert fitting_batch_size(tiny_vit, 16, available=1) == 1  # never below one image


def test_analyze_many_runs_the_smaller_batches(tiny_vit, monkeypatch):
    import vitviz.core.batch.many as many

    sizes = []
    real = many.run_batch
    monkeypatch.setattr(many, "run_batch", lambda lm, items, dtype: sizes.append(len(items)) or real(lm, items, dtype))
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device="cpu": per_image_bytes(tiny_vit) * 6)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (50, 60, 3), dtype=np.uint8) for _ in range(7)]
    with pytest.warns(BatchMemoryWarning):
        out = list(analyze_many(imgs, model=tiny_vit, batch_size=8, keep="stats"))
    assert len(out) == 7 and sizes == [3, 3, 1]
