"""Semantic rates of relevance / gradient rollout on the bundled demo models (issue 14, "Tests and
evidence"), measured by vitviz.demo.class_specific on held-out scenes (seeds from TEST_SEED).

The fast tests check the measurement itself on a few scenes; the slow ones assert the rates."""
from __future__ import annotations

import numpy as np
import pytest

from vitviz.demo import class_specific as cs
from vitviz.demo.scenes import CLASSES, TEST_SEED


@pytest.fixture(scope="module")
def loaded():
    from vitviz.core.models.loading import load_model

    return {name: load_model(name, "pretrained", "cpu") for name in ("demo_vit", "demo_swin")}


def _eligible(model, tries: int = 12):
    """The first held-out two-object scene whose top 2 are its two classes, and its analysis."""
    import vitviz

    for i in range(tries):
        image, labels, boxes, masks = cs.two_object_scene(TEST_SEED + i, return_mask=True)
        a = vitviz.analyze(image, model=model, attention_dtype="float32")
        if {p.index for p in a.top_predictions(2)} == set(labels):
            return a, labels, boxes, masks
    raise AssertionError(f"no eligible scene in {tries}")


def test_two_object_scene_is_two_separate_shapes_of_two_classes():
    for i in range(6):
        image, labels, boxes, masks = cs.two_object_scene(TEST_SEED + i, 96, return_mask=True)
        again, labels2, boxes2 = cs.two_object_scene(TEST_SEED + i, 96)
        assert np.array_equal(np.asarray(image), np.asarray(again)) and labels == labels2
        assert np.array_equal(boxes, boxes2)
        assert image.size == (96, 96) and len(set(labels)) == 2 and set(labels) <= set(range(len(CLASSES)))
        assert not (masks[0] & masks[1]).any()  # apart: neither hides the other
        for box, mask in zip(boxes, masks):
            ys, xs = np.nonzero(mask)
            assert max(box[2] - box[0], box[3] - box[1]) >= 0.2 * 96  # salient-sized (largest extent >= 0.3)
            # the box is tight on the mask (to the 1/4 px of scenes.py's supersampling)
            assert xs.min() == np.floor(box[0]) and xs.max() == np.ceil(box[2]) - 1
            assert ys.min() == np.floor(box[1]) and ys.max() == np.ceil(box[3]) - 1


def test_scoring_counts_a_peak_on_its_object_and_only_there(loaded):
    a, labels, boxes, masks = _eligible(loaded["demo_vit"])
    g = a.grid
    cells = [(r, c) for r in range(g.rows) for c in range(g.cols)]
    # the cell most covered by object 0, and one touching neither object nor box
    best = max(cells, key=lambda rc: cs.cell_cover(g.rect(*rc), masks[0]))
    empty = next(rc for rc in cells if not any(cs.cell_cover(g.rect(*rc), m) for m in masks)
                 and not any(cs.centre_in_box(g.rect(*rc), b) for b in boxes))
    for (r, c), expected in ((best, True), (empty, False)):
        m = np.full((g.rows, g.cols), np.nan)  # NaN (DETR's padding) never peaks
        m[r, c] = 1e-3
        assert cs.peak_hits(m, g, boxes[0], masks[0], masks[1]) == {"centre": expected, "cell": expected}
        assert cs.peak_hits(m, g, boxes[1], masks[1], masks[0]) == {"centre": False, "cell": False}
    with pytest.raises(ValueError, match="not on the grid"):
        cs.peak_hits(np.zeros((3, 3)), g, boxes[0], masks[0])
    # one map peaking on object 0, the other on object 1: class-specific; the same map twice: not
    m0, m1 = np.zeros((g.rows, g.cols)), np.zeros((g.rows, g.cols))
    m0[best] = 1
    m1[max(cells, key=lambda rc: cs.cell_cover(g.rect(*rc), masks[1]))] = 1
    assert cs.own_object_hits([(m0, g), (m1, g)], boxes, masks) == {"centre": [True, True], "cell": [True, True]}
    assert not any(all(h) for h in cs.own_object_hits([(m0, g), (m0, g)], boxes, masks).values())


@pytest.mark.parametrize("model", ["demo_vit", "demo_swin"])
def test_class_agnostic_maps_are_one_map_and_relevance_two(loaded, model):
    a, labels, boxes, masks = _eligible(loaded[model])
    maps = cs.CLASSIFIER_MAPS[a.family]
    agnostic = [name for name in maps if name in cs.CLASS_AGNOSTIC]
    assert agnostic and "relevance" in maps
    for name in agnostic:
        (v0, g0), (v1, _) = (maps[name](a, k, o) for k, o in (labels, labels[::-1]))
        assert np.array_equal(v0, v1) and v0.shape == (g0.rows, g0.cols)
        assert not any(all(h) for h in cs.own_object_hits([(v0, g0), (v1, g0)], boxes, masks).values())
    (r0, g), (r1, _) = (maps["relevance"](a, k, o) for k, o in (labels, labels[::-1]))
    assert r0.shape == (g.rows, g.cols)
    assert np.abs(r0 / np.abs(r0).max() - r1 / np.abs(r1).max()).max() > 0.05


def test_rates_on_a_few_scenes_are_shares_and_the_table_prints(loaded):
    spec = cs.class_specificity(loaded["demo_vit"], n=3)
    peaks = cs.classifier_peak_rates(loaded["demo_vit"], n=2)
    assert 0 <= spec["eligible"] <= 3 and peaks["n"] == 2
    for d in (*spec["class_specific"].values(), *peaks["peaks_on_object"].values()):
        assert set(d) == set(cs.CRITERIA)
        assert all(np.isnan(v) or 0 <= v <= 1 for v in d.values())
    if spec["eligible"]:
        assert spec["class_specific"]["rollout"] == {"centre": 0.0, "cell": 0.0}
    row = {"model": "demo_vit", "method": "rollout", "peaks_on_object": peaks["peaks_on_object"]["rollout"],
           "scenes": 2, "accuracy": peaks["accuracy"], "class_specific": spec["class_specific"]["rollout"],
           "one_of_two": spec["one_of_two"]["rollout"], "eligible": spec["eligible"], "pairs": 3}
    text = cs.format_table([row])
    assert "| demo_vit | rollout (class-agnostic) |" in text and "of 3 scenes eligible" in text


# --- the rates (slow: ~12 min for all on 2 shared cores) ----------------------------------------
# Measured (python -m vitviz.demo.class_specific --n 200 --pairs 300), "centre / cell" criteria:
# demo_vit relevance peaks 88.0% / 94.5%, demo_swin relevance 89.5% / 76.0%, demo_detr 99.8% / 99.8%;
# class-specific relevance demo_vit 48.5% / 58.5%, demo_swin 34.5% / 22.3% (rollout, attention
# summary: 0% by construction). The goals not met are strict xfails: they fail once a retrained
# model meets them, so the marks come off then.
N, PAIRS = 200, 300
UNMET = "demo classifiers trained on one salient shape per scene (issue 14: retrain multi-label)"


@pytest.fixture(scope="module")
def peaks(loaded):
    return {m: cs.classifier_peak_rates(loaded[m], n=N)["peaks_on_object"] for m in loaded}


@pytest.fixture(scope="module")
def specific(loaded):
    return {m: cs.class_specificity(loaded[m], n=PAIRS) for m in loaded}


@pytest.mark.slow
def test_detr_relevance_of_each_detection_peaks_in_its_box():
    r = cs.detector_peak_rates("demo_detr", n=N)
    assert r["detections"] > 2 * N  # most objects found (1-6 a scene)
    assert r["peaks_on_object"]["relevance"]["centre"] >= 0.9
    assert r["peaks_on_object"]["relevance"]["cell"] >= 0.9


@pytest.mark.slow
def test_demo_vit_relevance_peak_cell_is_on_the_object(peaks):
    assert peaks["demo_vit"]["relevance"]["cell"] >= 0.9


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=f"measured 88.0%: relevance peaks on outlines; {UNMET}")
def test_demo_vit_relevance_peak_centre_is_in_the_box(peaks):
    assert peaks["demo_vit"]["relevance"]["centre"] >= 0.9


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=f"measured 89.5% / 76.0%; {UNMET}")
def test_demo_swin_relevance_peaks_on_the_object(peaks):
    assert min(peaks["demo_swin"]["relevance"].values()) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo_vit", "demo_swin"])
def test_relevance_is_class_specific_where_class_agnostic_maps_cannot_be(specific, model):
    """What holds today: many scenes eligible; class-agnostic maps never right for both classes
    (but right for one); relevance right for both in a third of the scenes or more."""
    s = specific[model]
    agnostic = next(m for m in s["class_specific"] if m in cs.CLASS_AGNOSTIC)
    assert s["eligible"] >= PAIRS // 3
    assert s["class_specific"][agnostic] == {"centre": 0.0, "cell": 0.0}
    assert s["one_of_two"][agnostic]["centre"] >= 0.9
    assert s["class_specific"]["relevance"]["centre"] >= 0.3


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo_vit", "demo_swin"])
@pytest.mark.xfail(strict=True, reason=f"measured 48.5% (ViT), 34.5% (Swin); {UNMET}")
def test_relevance_class_specificity_meets_the_goal(specific, model):
    assert specific[model]["class_specific"]["relevance"]["centre"] >= 0.8
