"""Semantic rates of the class-specific methods (relevance, gradient rollout) on the demo models.

Two numbers, on held-out scenes (seeds from ``TEST_SEED``, never used in training), through the
same ``analyze`` / ``explain`` pipeline the app uses:

- **peaks on object**: the map for the predicted class (DETR: for each detection matched to an
  object, ``vitviz.demo.evaluate.match_detections``) peaks on the object, counted over all scenes;
- **class-specific**: on ``two_object_scene``s (two large shapes of different classes) where the
  classifier's top 2 are exactly those two classes, the map for each class peaks on its own
  object, both in the same scene. A class-agnostic map (rollout, Swin's attention summary) is the
  same for both classes, so it can be right for at most one of the two: its rate is 0 by
  construction, which is what the row shows.

"Peaks on" is scored two ways (CRITERIA), both from the largest cell of the map (NaN never peaks):
``centre``: the cell's centre lies inside the object's tight box (``evaluate.peak_rect`` /
``centre_in_box``, the rule evaluate.py scores attention with); ``cell``: the cell covers pixels
of the object's shape (its mask), and for class-specificity more of its own object's pixels than
of the other's. Gradient maps often peak on an object's outline; on the demo ViT's 8 x 8 grid (12
px cells on a 96 px scene) such a cell straddles the edge and its centre can fall just outside;
on Swin's 16 x 16 stage-0 grid (6 px cells) a peak between a star's arms is in the box but off
the shape.

    python -m vitviz.demo.class_specific [--n 200] [--pairs 300]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .evaluate import centre_in_box, match_detections, peak_rect
from .scenes import (
    _PLACEMENT_TRIES, _REACH, CLASSES, SALIENT_SIZE, TEST_SEED, _mean_under, _random_background,
    _random_shape, _render, _render_background, _with_colour, classification_scene, detection_scene,
)


# --------------------------------------------------------------------------- scenes ---
def two_object_scene(seed: int, size: int = 96, return_mask: bool = False):
    """Two shapes of different classes at the classifier's salient size (scenes.SALIENT_SIZE),
    apart (the gap between their circumcircles is positive), on a scenes.py background.

    Returns ``(image, labels [2], boxes float32 [2, 4])``, plus the shapes' boolean masks
    ``[2, size, size]`` when `return_mask`; a pure function of `seed`.
    """
    rng = np.random.default_rng(int(seed))
    bg = _random_background(rng)
    labels = [int(k) for k in rng.choice(len(CLASSES), 2, replace=False)]
    shapes = []
    while len(shapes) < 2:  # new sizes when the pair does not fit apart
        shapes = []
        sizes = rng.uniform(*SALIENT_SIZE, 2)
        first = _random_shape(rng, labels[0], float(sizes[0]), inside=1.0)
        for _ in range(_PLACEMENT_TRIES):
            second = _random_shape(rng, labels[1], float(sizes[1]), inside=1.0)
            gap = math.hypot(second.cx - first.cx, second.cy - first.cy)
            if gap > (_REACH[labels[0]] * first.size + _REACH[labels[1]] * second.size) / 2:
                shapes = [first, second]
                break
    bg_img = _render_background(bg, size)
    shapes = [_with_colour(rng, s, [_mean_under(bg_img, s.extent())]) for s in shapes]
    image, boxes, masks = _render(bg, shapes, size, return_mask)
    if return_mask:
        return image, labels, np.array(boxes, dtype=np.float32), np.array(masks, dtype=bool)
    return image, labels, np.array(boxes, dtype=np.float32)


# ---------------------------------------------------------------------------- scores ---
CRITERIA = ("centre", "cell")


def cell_cover(rect, mask: np.ndarray) -> float:
    """The share of the pixels of `rect` (x0, y0, x1, y1; original pixels) inside `mask`."""
    h, w = mask.shape
    x0, y0 = max(0, math.floor(rect[0])), max(0, math.floor(rect[1]))
    x1, y1 = min(w, math.ceil(rect[2])), min(h, math.ceil(rect[3]))
    return float(mask[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0


def peak_hits(values: np.ndarray, grid, box, mask: np.ndarray, other: np.ndarray | None = None) -> dict:
    """Does the largest cell of `values` on `grid` lie on the object (box, mask)? {"centre": its
    centre is in `box`, "cell": it covers object pixels, more than of the `other` object's mask}."""
    if values.shape != (grid.rows, grid.cols):
        raise ValueError(f"map {values.shape} is not on the grid ({grid.rows}, {grid.cols})")
    rect = peak_rect(values, grid)
    cover = cell_cover(rect, mask)
    return {"centre": bool(centre_in_box(rect, box)),
            "cell": cover > (cell_cover(rect, other) if other is not None else 0.0)}


def own_object_hits(maps, boxes, masks) -> dict:
    """maps[i] = (values, grid) for object i's class (two objects): per criterion, whether each
    map peaks on its own object rather than the other."""
    hits = [peak_hits(v, g, boxes[i], masks[i], masks[1 - i]) for i, (v, g) in enumerate(maps)]
    return {c: [h[c] for h in hits] for c in CRITERIA}


# Per family: method row name -> (analysis, class k, other class) -> (map, its grid). The
# class-agnostic rows ignore the classes; "relevance_contrast" explains logit k minus logit other
# ("why k rather than other", the app's contrast option), other being the other object's class
# (one-object scenes: the runner-up).
CLASSIFIER_MAPS = {
    "vit": {
        "rollout": lambda a, k, other: (a.explain("rollout"), a.grid),
        "grad_rollout": lambda a, k, other: (a.explain("grad_rollout", target=k), a.grid),
        "relevance": lambda a, k, other: (a.explain("relevance", target=k), a.grid),
        "relevance_contrast": lambda a, k, other: (a.explain("relevance", target=k, contrast=other), a.grid),
    },
    "swin": {  # Swin has no rollout: its class-agnostic map is the last stage's attention summary
        "attention_summary": lambda a, k, other: (a.attention_summary(), a.stage_grid(-1)),
        "relevance": lambda a, k, other: (a.explain("relevance", target=k), a.stage_grid(0)),
        "relevance_contrast": lambda a, k, other: (a.explain("relevance", target=k, contrast=other),
                                                   a.stage_grid(0)),
    },
}
CLASS_AGNOSTIC = {"rollout", "attention_summary", "cross_attention"}


def _load(model, weights, device):
    from vitviz.core.models.loading import load_model

    return load_model(model, weights, device) if isinstance(model, str) else model


def classifier_peak_rates(model="demo_vit", weights="pretrained", n: int = 200, seed: int = TEST_SEED,
                          size: int = 96, device: str = "cpu") -> dict:
    """On classification scenes ``seed .. seed+n-1``: accuracy, and per method the share of scenes
    whose map for the predicted class peaks on the salient shape."""
    from vitviz.core.api import analyze

    loaded = _load(model, weights, device)
    methods = CLASSIFIER_MAPS[loaded.spec.family]
    hits = {m: dict.fromkeys(CRITERIA, 0) for m in methods}
    correct = 0
    for i in range(n):
        image, label, box, mask = classification_scene(seed + i, size, return_mask=True)
        a = analyze(image, model=loaded, attention_dtype="float32")
        top, second = (p.index for p in a.top_predictions(2))
        correct += top == label
        for name, fn in methods.items():
            for c, hit in peak_hits(*fn(a, top, second), box, mask).items():
                hits[name][c] += hit
    return {"model": loaded.spec.name, "n": n, "seed": seed, "size": size, "accuracy": correct / n,
            "peaks_on_object": {m: {c: h / n for c, h in d.items()} for m, d in hits.items()}}


def class_specificity(model="demo_vit", weights="pretrained", n: int = 300, seed: int = TEST_SEED,
                      size: int = 96, device: str = "cpu") -> dict:
    """On ``two_object_scene``s ``seed .. seed+n-1``: how many have both classes as the top 2
    ("eligible"), and per method the share of those where each class's map peaks on its own
    object; also the share where at least one of the two does ("one_of_two")."""
    from vitviz.core.api import analyze

    loaded = _load(model, weights, device)
    methods = CLASSIFIER_MAPS[loaded.spec.family]
    both = {m: dict.fromkeys(CRITERIA, 0) for m in methods}
    one = {m: dict.fromkeys(CRITERIA, 0) for m in methods}
    eligible = 0
    for i in range(n):
        image, labels, boxes, masks = two_object_scene(seed + i, size, return_mask=True)
        a = analyze(image, model=loaded, attention_dtype="float32")
        if {p.index for p in a.top_predictions(2)} != set(labels):
            continue
        eligible += 1
        for name, fn in methods.items():
            maps = [fn(a, k, other) for k, other in (labels, labels[::-1])]
            for c, hits in own_object_hits(maps, boxes, masks).items():
                both[name][c] += all(hits)
                one[name][c] += any(hits)
    rates = (lambda d: {c: v / eligible if eligible else float("nan") for c, v in d.items()})
    return {"model": loaded.spec.name, "n": n, "seed": seed, "size": size, "eligible": eligible,
            "class_specific": {m: rates(d) for m, d in both.items()},
            "one_of_two": {m: rates(d) for m, d in one.items()}}


def detector_peak_rates(model="demo_detr", weights="pretrained", n: int = 200, seed: int = TEST_SEED,
                        size: int = 128, threshold: float = 0.7, device: str = "cpu") -> dict:
    """On detection scenes ``seed .. seed+n-1``: for each detection above `threshold` matched to
    an object (IoU >= 0.5, right class), whether its relevance map (target = its query) peaks in
    the object's box; the last decoder layer's cross-attention of that query for comparison."""
    from vitviz.core.api import analyze

    loaded = _load(model, weights, device)
    matched = 0
    maps = {"relevance": lambda a, q: a.explain("relevance", target=q),
            "cross_attention": lambda a, q: a.cross_attention(-1, "mean", q)}
    hits = {m: dict.fromkeys(CRITERIA, 0) for m in maps}
    for i in range(n):
        image, labels, boxes, masks = detection_scene(seed + i, size, return_mask=True)
        a = analyze(image, model=loaded, attention_dtype="float32")
        dets = a.detections(threshold)
        for box, mask, d in zip(boxes, masks, match_detections(dets, labels, boxes)):
            if d is None:
                continue
            matched += 1
            for name, fn in maps.items():
                for c, hit in peak_hits(fn(a, dets[d].query), a.grid, box, mask).items():
                    hits[name][c] += hit
    rate = (lambda v: v / matched if matched else float("nan"))
    return {"model": loaded.spec.name, "n": n, "seed": seed, "size": size, "threshold": threshold,
            "detections": matched,
            "peaks_on_object": {m: {c: rate(v) for c, v in d.items()} for m, d in hits.items()}}


# ----------------------------------------------------------------------------- table ---
def measure(n: int = 200, pairs: int = 300, device: str = "cpu") -> list[dict]:
    """One row per (model, method): peaks_on_object, class_specific (None where not measured)."""
    rows = []
    for model in ("demo_vit", "demo_swin"):
        peaks = classifier_peak_rates(model, n=n, device=device)
        spec = class_specificity(model, n=pairs, device=device)
        for m, p in peaks["peaks_on_object"].items():
            rows.append({"model": model, "method": m, "peaks_on_object": p, "scenes": n,
                         "accuracy": peaks["accuracy"], "class_specific": spec["class_specific"][m],
                         "one_of_two": spec["one_of_two"][m], "eligible": spec["eligible"], "pairs": pairs})
    det = detector_peak_rates(n=n, device=device)
    for m, p in det["peaks_on_object"].items():
        rows.append({"model": "demo_detr", "method": m, "peaks_on_object": p, "scenes": n,
                     "detections": det["detections"], "class_specific": None})
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown; each rate as "centre / cell" (CRITERIA)."""
    pct = (lambda d: " / ".join(f"{100 * d[c]:.1f}%" for c in CRITERIA))
    out = ["| model | method | peaks on object (centre / cell) | class-specific (centre / cell) |",
           "|---|---|---|---|"]
    for r in rows:
        where = (f"{r['detections']} detections" if "detections" in r
                 else f"{r['scenes']} scenes, acc {100 * r['accuracy']:.1f}%")
        spec = ("n/a" if r["class_specific"] is None else
                f"{pct(r['class_specific'])} ({r['eligible']} of {r['pairs']} scenes eligible; "
                f"one of two {pct(r['one_of_two'])})")
        agnostic = " (class-agnostic)" if r["method"] in CLASS_AGNOSTIC else ""
        out.append(f"| {r['model']} | {r['method']}{agnostic} | {pct(r['peaks_on_object'])} ({where}) | {spec} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.demo.class_specific",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="held-out scenes per model for 'peaks on object'")
    parser.add_argument("--pairs", type=int, default=300, help="two-object scenes per classifier")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(format_table(measure(args.n, args.pairs, args.device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
