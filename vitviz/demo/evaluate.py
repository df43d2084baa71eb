"""Measure a demo model on held-out shapes scenes, through the same pipeline the app uses.

Two numbers per model: classification accuracy, and how often the model's attention peak lies on
the salient shape - the token with the largest value of the class-token rollout (ViT,
``analysis.rollout(query="cls")``) or of the last-stage attention summary (Swin,
``analysis.attention_summary()``), mapped to original-image pixels through the token grid, must
have its centre inside the salient shape's tight box. Used by the training script's model card and
by tests/test_demo_models.py.
"""
from __future__ import annotations

import numpy as np

from .scenes import CLASSES, TEST_SEED, classification_scene


def peak_rect(values: np.ndarray, grid) -> tuple[float, float, float, float]:
    """The original-pixel rectangle of the largest entry of a [rows, cols] map on `grid` (NaN, as
    on DETR's padding cells, is never the peak)."""
    row, col = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return grid.rect(int(row), int(col))


def centre_in_box(rect, box) -> bool:
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def evaluate_classifier(model: str = "demo_vit", weights: str = "pretrained", n: int = 200,
                        seed: int = TEST_SEED, size: int = 96, device: str = "cpu") -> dict:
    """Accuracy and attention-peak-in-box rate on scenes ``seed .. seed+n-1`` rendered at ``size``.

    Returns {"n", "size", "seed", "accuracy", "per_class", "peak_in_box", "attention" (what map
    was used)}.
    """
    from vitviz.core.api import analyze
    from vitviz.core.models.loading import load_model

    loaded = load_model(model, weights, device)
    family = loaded.spec.family
    correct = np.zeros(len(CLASSES))
    seen = np.zeros(len(CLASSES))
    hits = 0
    for i in range(n):
        image, label, box = classification_scene(seed + i, size)
        analysis = analyze(image, model=loaded, attention_dtype="float32")
        if family == "vit":
            rect = peak_rect(analysis.rollout(query="cls"), analysis.grid)
        else:
            rect = peak_rect(analysis.attention_summary(), analysis.stage_grid(-1))  # last stage
        hits += centre_in_box(rect, box)
        seen[label] += 1
        correct[label] += int(np.argmax(analysis.logits)) == label
    return {
        "n": n, "size": size, "seed": seed,
        "accuracy": float(correct.sum() / n),
        "per_class": {c: float(correct[k] / seen[k]) if seen[k] else None for k, c in enumerate(CLASSES)},
        "peak_in_box": float(hits / n),
        "attention": ("class-token rollout (mean over heads, no discard), argmax token centre"
                      if family == "vit" else "Swin last-stage attention_summary(), argmax cell centre"),
    }


def match_detections(detections, labels, boxes, iou: float = 0.5) -> list[int | None]:
    """For each ground-truth object, the index of the detection matched to it (or None): the
    detections, best score first, each take the unmatched object of their class they overlap most,
    if that IoU reaches `iou` (COCO's greedy matching; one detection per object)."""
    import torch
    from torchvision.ops import box_iou

    matched: list[int | None] = [None] * len(labels)
    if not detections or not len(labels):
        return matched
    ious = box_iou(torch.tensor([d.box for d in detections], dtype=torch.float64),
                   torch.as_tensor(np.asarray(boxes, np.float64))).numpy()  # (detections, objects)
    same_class = np.asarray([d.label for d in detections])[:, None] == np.asarray(labels)[None, :]
    ious[~same_class] = -1.0
    for d_idx in range(len(detections)):  # best score first
        free = [g for g in range(len(labels)) if matched[g] is None]
        if free:
            g = max(free, key=lambda j: ious[d_idx, j])
            if ious[d_idx, g] >= iou:
                matched[g] = d_idx
    return matched


def evaluate_detector(model: str = "demo_detr", weights: str = "pretrained", n: int = 200,
                      seed: int = TEST_SEED, size: int = 128, threshold: float = 0.7,
                      device: str = "cpu") -> dict:
    """On detection scenes ``seed .. seed+n-1`` rendered at ``size`` px, through ``analyze``:

    - recall: the fraction of ground-truth objects matched (match_detections: IoU >= 0.5, right
      class) by a detection above ``threshold`` (the app's default);
    - precision: the fraction of those detections that matched an object;
    - peak_in_box: for each matched object, whether the matched query's last-layer decoder
      cross-attention (mean over heads), at its largest cell, has that cell's centre inside the
      object's box.
    """
    from vitviz.core.api import analyze
    from vitviz.core.models.loading import load_model

    from .scenes import detection_scene

    loaded = load_model(model, weights, device)
    objects = found = detections = hits = 0
    per_class_seen = np.zeros(len(CLASSES))
    per_class_found = np.zeros(len(CLASSES))
    for i in range(n):
        image, labels, boxes = detection_scene(seed + i, size)
        analysis = analyze(image, model=loaded, attention_dtype="float32")
        dets = analysis.detections(threshold)
        matched = match_detections(dets, labels, boxes)
        objects += len(labels)
        detections += len(dets)
        for label, box, d in zip(labels, boxes, matched):
            per_class_seen[label] += 1
            if d is None:
                continue
            found += 1
            per_class_found[label] += 1
            rect = peak_rect(analysis.cross_attention(-1, "mean", dets[d].query), analysis.grid)
            hits += bool(centre_in_box(rect, box))
    return {
        "n": n, "size": size, "seed": seed, "threshold": threshold, "objects": objects,
        "recall": found / objects if objects else 0.0,
        "precision": found / detections if detections else 0.0,
        "peak_in_box": hits / found if found else 0.0,
        "per_class_recall": {c: float(per_class_found[k] / per_class_seen[k]) if per_class_seen[k] else None
                             for k, c in enumerate(CLASSES)},
        "attention": "last decoder layer's cross-attention of the matched query, mean over heads, "
                     "argmax cell centre",
    }
