"""Tests for the procedural shapes scenes (vitviz.demo.scenes)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vitviz.demo import scenes
from vitviz.demo.scenes import (
    CLASSES,
    DETECTION_SIZE,
    DISTRACTOR_SIZE,
    MAX_DETECTION_IOU,
    SALIENT_SIZE,
    classification_dataset,
    classification_scene,
    detection_dataset,
    detection_scene,
    write_samples,
)

SEEDS = range(24)


def _assert_tight(mask: np.ndarray, box, side: int) -> None:
    """Mask pixels lie inside the box and reach each of its edges."""
    x0, y0, x1, y1 = (float(v) for v in box)
    assert 0 <= x0 < x1 <= side and 0 <= y0 < y1 <= side
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    assert cols.size and rows.size
    assert (cols[0], cols[-1]) == (math.floor(x0), math.ceil(x1) - 1)
    assert (rows[0], rows[-1]) == (math.floor(y0), math.ceil(y1) - 1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.mark.parametrize("scene, size", [(classification_scene, 96), (detection_scene, 128)])
def test_deterministic_per_seed(scene, size) -> None:
    a, b, c = scene(7, size)[0], scene(7, size)[0], scene(8, size)[0]
    assert a.mode == "RGB" and a.size == (size, size)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # A Generator seeded the same way is equivalent to the integer seed.
    assert scene(np.random.default_rng(7), size)[0].tobytes() == a.tobytes()


def test_datasets_index_by_seed() -> None:
    ds = classification_dataset(5, seed=100, size=64)
    assert len(ds) == 5
    assert ds[2][0].tobytes() == classification_scene(102, 64)[0].tobytes()
    assert ds[-1][1] == classification_scene(104, 64)[1]
    with pytest.raises(IndexError):
        ds[5]
    det = detection_dataset(3, seed=scenes.TEST_SEED, size=64)
    assert [len(item[1]) for item in det] == [len(detection_scene(scenes.TEST_SEED + i, 64)[1]) for i in range(3)]


def test_classification_labels_boxes_and_sizes() -> None:
    size = 96
    labels = set()
    for seed in SEEDS:
        image, label, box, mask = classification_scene(seed, size, return_mask=True)
        assert 0 <= label < len(CLASSES)
        labels.add(label)
        assert mask.shape == (size, size) and mask.dtype == bool
        _assert_tight(mask, box, size)
        # Largest box side is between the square's side and the shape's extent.
        side = max(box[2] - box[0], box[3] - box[1])
        assert 0.7 * SALIENT_SIZE[0] * size - 1 <= side <= SALIENT_SIZE[1] * size + 1
    assert len(labels) >= 4  # classes are mixed, not stuck on one


def test_distractors_are_small() -> None:
    size, total = 96, 0
    for seed in SEEDS:
        _, salient, distractors = scenes._classification_layout(np.random.default_rng(seed))
        assert len(distractors) <= scenes.MAX_DISTRACTORS
        total += len(distractors)
        salient_box = scenes._rasterise(salient, size)[3]
        for d in distractors:
            assert DISTRACTOR_SIZE[0] <= d.size <= DISTRACTOR_SIZE[1] < salient.size
            x0, y0, x1, y1 = scenes._rasterise(d, size)[3]
            assert max(x1 - x0, y1 - y0) <= DISTRACTOR_SIZE[1] * size + 1
            assert (x1 - x0) * (y1 - y0) < 0.25 * (salient_box[2] - salient_box[0]) * (salient_box[3] - salient_box[1])
    assert total > 0


def test_detection_counts_boxes_and_overlap() -> None:
    size = 128
    counts = set()
    for seed in SEEDS:
        image, labels, boxes, masks = detection_scene(seed, size, return_mask=True)
        n = len(labels)
        assert 1 <= n <= scenes.MAX_DETECTION_OBJECTS
        counts.add(n)
        assert all(0 <= lab < len(CLASSES) for lab in labels)
        assert boxes.shape == (n, 4) and boxes.dtype == np.float32
        assert masks.shape == (n, size, size)
        for i in range(n):
            _assert_tight(masks[i], boxes[i], size)
            w, h = boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]
            assert max(w, h) <= DETECTION_SIZE[1] * size + 1
            for j in range(i):
                # Placement uses geometric boxes; rasterised ones differ by < 1 px.
                assert _iou(boxes[i], boxes[j]) <= MAX_DETECTION_IOU + 0.05
    assert len(counts) >= 3


def test_scale_free_layout() -> None:
    small, large = classification_scene(3, 64), classification_scene(3, 256)
    assert small[1] == large[1]
    assert np.allclose(np.array(small[2]) / 64, np.array(large[2]) / 256, atol=1.5 / 64)
    det_small, det_large = detection_scene(3, 64), detection_scene(3, 256)
    assert det_small[1] == det_large[1]
    assert np.allclose(det_small[2] / 64, det_large[2] / 256, atol=1.5 / 64)


def test_write_samples(tmp_path) -> None:
    paths = write_samples(tmp_path, size=64)
    names = sorted(p.name for p in paths)
    assert names == [f"shapes_classify_{k}.png" for k in (1, 2, 3)] + [f"shapes_detect_{k}.png" for k in (1, 2)]
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_module_does_not_import_torch() -> None:
    code = "import sys, vitviz.demo.scenes; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
