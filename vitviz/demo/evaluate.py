"""Measure a demo model on held-out shapes scenes, through the same pipeline the app uses.

Two numbers per model: classification accuracy, and how often the model's attention peak lies on
the salient shape - the token with the largest value of the class-token rollout (ViT,
``analysis.rollout(query="cls")``) or of the last-stage attention summary (Swin,
``analysis.attention_summary()``), mapped to original-image pixels through the token grid, must
have its centre inside the salient shape's tight box. Used by the training script's model card and
by tests/test_demo_models.py.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from .scenes import CLASSES, TEST_SEED, classification_scene


def peak_rect(values: np.ndarray, grid) -> tuple[float, float, float, float]:
    """The original-pixel rectangle of the largest entry of a [rows, cols] map on `grid`."""
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return grid.rect(int(row), int(col))


def centre_in_box(rect, box) -> bool:
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def capture_available(family: str) -> bool:
    from vitviz.core.api import _RUNNERS

    return importlib.util.find_spec(_RUNNERS[family]) is not None


def evaluate_classifier(model: str = "demo_vit", weights: str = "pretrained", n: int = 200,
                        seed: int = TEST_SEED, size: int = 96, device: str = "cpu") -> dict:
    """Accuracy and attention-peak-in-box rate on scenes ``seed .. seed+n-1`` rendered at ``size``.

    Returns {"n", "size", "seed", "accuracy", "per_class", "peak_in_box" (None when the family's
    capture is not available), "attention" (what map was used), "attention_note"}.
    """
    from vitviz.core.api import analyze
    from vitviz.core.models.loading import load_model

    loaded = load_model(model, weights, device)
    family = loaded.spec.family
    use_capture = capture_available(family)
    correct = np.zeros(len(CLASSES))
    seen = np.zeros(len(CLASSES))
    hits = 0
    for i in range(n):
        image, label, box = classification_scene(seed + i, size)
        if use_capture:
            analysis = analyze(image, model=loaded, attention_dtype="float32")
            logits = analysis.logits
            if family == "vit":
                values = analysis.rollout(query="cls")
                rect = peak_rect(values, analysis.grid)
            else:
                values = analysis.attention_summary()  # last stage
                rect = peak_rect(values, analysis.stage_grid(-1))
            hits += centre_in_box(rect, box)
        else:
            logits = _plain_logits(loaded, image)
        seen[label] += 1
        correct[label] += int(np.argmax(logits)) == label
    result = {
        "n": n, "size": size, "seed": seed,
        "accuracy": float(correct.sum() / n),
        "per_class": {c: float(correct[k] / seen[k]) if seen[k] else None for k, c in enumerate(CLASSES)},
        "peak_in_box": float(hits / n) if use_capture else None,
        "attention": ("class-token rollout (mean over heads, no discard), argmax token centre"
                      if family == "vit" else "Swin last-stage attention_summary(), argmax cell centre"),
        "attention_note": None if use_capture else
        f"not measured: vitviz has no {family} attention capture yet",
    }
    return result


def _plain_logits(loaded, image) -> np.ndarray:
    """Logits without capture, through the same preprocessing (for families not captured yet)."""
    import torch

    from vitviz.core.preprocess import prepare

    x, _ = prepare(image, loaded.preprocess)
    with torch.no_grad():
        return loaded.module(x.unsqueeze(0).to(loaded.device))[0].float().cpu().numpy()


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(detections, labels, boxes, iou: float = 0.5) -> list[int | None]:
    """For each ground-truth object, the index of the detection matched to it (or None): the
    detections, best score first, each take the unmatched object of their class they overlap most,
    if that IoU reaches `iou` (COCO's greedy matching; one detection per object)."""
    matched: list[int | None] = [None] * len(labels)
    for d_idx, det in enumerate(detections):
        best, best_iou = None, iou
        for g, (label, box) in enumerate(zip(labels, boxes)):
            if matched[g] is None and det.label == label:
                v = box_iou(det.box, box)
                if v >= best_iou:
                    best, best_iou = g, v
        if best is not None:
            matched[best] = d_idx
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
            values = analysis.cross_attention(-1, "mean", dets[d].query)
            row, col = np.unravel_index(int(np.nanargmax(values)), values.shape)
            hits += bool(centre_in_box(analysis.grid.rect(int(row), int(col)), box))
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
