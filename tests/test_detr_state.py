"""DETR's view state as data (vitviz.core.detr.state), its figure built without widgets, the box
palette and the label placement (vitviz.core.detr.marks). Qt-free; the tiny random DETR of
tests/test_detr_api.py with its boxes spread apart."""
import dataclasses
import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vitviz.core.detr.figures import build
from vitviz.core.detr.marks import PALETTE, box_rgba, place_labels
from vitviz.core.detr.state import DetrState
from vitviz.core.figures import ExportError

from .test_detr_api import TINY_DETR  # noqa: F401 (registers test_tiny_detr)


@pytest.fixture(scope="module")
def analysis():
    import vitviz
    from vitviz.core.api import get_model

    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8))
    a = vitviz.analyze(img, model=get_model("test_tiny_detr", "random", cache=False))
    i = np.arange(a.num_queries)
    boxes = np.stack([(i % 4 + 0.5) / 4, (i // 4 + 0.5) / 3, 0.12 + 0.01 * (i % 3), 0.16 + 0.02 * (i % 2)], 1)
    return dataclasses.replace(a, boxes=boxes.astype(np.float32))


def ranked(a, threshold):
    """Queries above `threshold`, best first, computed here from the probabilities."""
    best = a.probabilities()[:, :-1].max(axis=1)
    order = np.argsort(-best, kind="stable")
    return [int(q) for q in order if best[q] > threshold]


# -- JSON -----------------------------------------------------------------------------------------

def test_defaults_round_trip_and_are_hashable():
    s = DetrState()
    assert (s.threshold, s.query, s.layer, s.head, s.direction, s.focus) == (0.7, "auto", -1, "mean", "from", "query")
    assert DetrState.from_json(json.loads(json.dumps(s.to_json()))) == s
    s = DetrState(query=7, point=(10.0, 20.5), cell=(1, 2), head=3, threshold=0.25)
    j = s.to_json()
    assert j["family"] == "detr" and j["query"] == "q7" and j["point"] == [10.0, 20.5]
    assert DetrState.from_json(json.loads(json.dumps(j))) == s
    assert len({s, DetrState.from_json(j)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threshold = 0.1


@pytest.mark.parametrize("given, fields", [
    (3, {"query": "auto", "detection": 3, "focus": "query"}),
    ("3", {"query": "auto", "detection": 3, "focus": "query"}),
    ("q11", {"query": 11, "focus": "query"}),
    ([2, 5], {"query": None, "cell": (2, 5), "point": None, "focus": "point"}),
    ("2,5", {"query": None, "cell": (2, 5), "point": None, "focus": "point"}),
    ("none", {"query": None, "focus": "query"}),
    (None, {"query": None, "focus": "query"}),
    ("cls", {"query": 4, "focus": "point"}),  # keeps what the base state has
])
def test_the_query_forms_of_settings_dicts(given, fields):
    base = DetrState(query=4, focus="point")
    s = base.updated({"query": given})
    assert {k: getattr(s, k) for k in fields} == fields


def test_bad_query_text_is_reported():
    with pytest.raises(ExportError, match="query must be"):
        DetrState.from_json({"query": "left"})


# -- resolved -------------------------------------------------------------------------------------

def test_resolved_picks_objects_probe_and_layers(analysis):
    a = analysis
    dets = ranked(a, 0.0)
    s = DetrState(threshold=0.0).resolved(a)
    assert s.query == dets[0] and s.detection == 0  # auto: the best
    s = DetrState(threshold=0.0).updated({"query": 2}).resolved(a)
    assert s.query == dets[2] and s.detection == 2
    low = dets[-1]
    t = float(a.probabilities()[low, :-1].max())  # at its own score it is not above the threshold
    s = DetrState(threshold=t, query=low).resolved(a)
    assert s.query == low and s.detection is None
    assert DetrState(threshold=0.99).resolved(a).query is None  # random weights: nothing that sure
    assert DetrState(threshold=0.99).resolved(a).shown_focus() == "point"
    # a cell alone puts the point at its centre, kept on the image; a point finds its cell
    s = DetrState(cell=(3, 6)).resolved(a)
    x, y = a.cell_center(3, 6)
    assert s.point == (min(x, 149.5), min(y, 89.5)) and s.cell == (3, 6)
    s = DetrState(point=(10.0, 80.0)).resolved(a)
    assert s.cell == a.cell_at(10.0, 80.0)
    assert DetrState().resolved(a).point == (75.0, 45.0)  # the image's centre
    # layer counts over the longer stack (3 decoder, 2 encoder layers); each uses what it has
    s = DetrState(layer=-1).resolved(a)
    assert s.layer == 2 and (s.decoder_layer(a), s.encoder_layer(a)) == (2, 1)
    assert DetrState(layer=-3).resolved(a).layer == 0
    assert DetrState(model_view=True).resolved(a).model_view is False  # DETR has no model view


@pytest.mark.parametrize("state, message", [
    (DetrState(threshold=1.5), "threshold"), (DetrState(layer=3), "layer 3 is out of range"),
    (DetrState(head=4), "head 4 is out of range"), (DetrState(head="median"), "head must be"),
    (DetrState(query=12), "12 object queries"), (DetrState(point=(400.0, 10.0)), "is not on the image"),
    (DetrState(cell=(9, 0)), "outside the 4x7 feature map"), (DetrState(colormap="nope"), "unknown colormap"),
    (DetrState(focus="both"), "focus must be"), (DetrState(direction="up"), "direction must be"),
    (DetrState(threshold=0.0, detection=12), "detection 12: 12 object"),
])
def test_resolved_reports_bad_values(analysis, state, message):
    with pytest.raises(ExportError, match=message):
        state.resolved(analysis)


def test_what_survives_a_threshold_and_a_new_analysis(analysis):
    a = analysis
    dets = ranked(a, 0.0)
    s = DetrState(threshold=0.0, query=dets[1]).resolved(a)
    assert s.at_threshold(0.0, a).resolved(a).query == dets[1]  # still detected: kept
    t = float(a.probabilities()[dets[1], :-1].max())
    assert s.at_threshold(t, a).resolved(a).query == ranked(a, t)[0]  # dropped below: the best
    # a smaller model on a smaller image: layer clamped, a head it lacks fused, the point re-centred
    small = SimpleNamespace(num_layers=2, num_encoder_layers=1, num_heads=2, detections=lambda t: [],
                            cell_at=lambda x, y: (0, 0) if x < 50 and y < 30 else None)
    s = DetrState(threshold=0.0, query=dets[0], layer=2, head=3, point=(120.0, 80.0), cell=(3, 6), direction="to")
    c = s.carried_over(small)
    assert (c.layer, c.head, c.point, c.cell, c.query) == (1, "mean", None, None, "auto")
    assert (c.threshold, c.direction) == (0.0, "to")
    near = DetrState(point=(10.0, 10.0), head=1).carried_over(small)
    assert near.point == (10.0, 10.0) and near.head == 1


# -- the figure, from (analysis, state) alone ------------------------------------------------------

def test_figure_from_the_state_and_again_from_its_settings(analysis):
    a = analysis
    dets = ranked(a, 0.0)
    src = build(a, DetrState(threshold=0.0, head=2, layer=1).updated({"query": 3}))
    assert list(src.views)[:4] == ["detections", "attention", "encoder", "grid"]
    np.testing.assert_array_equal(src.views["attention"].values, a.cross_attention(1, 2, dets[3]))
    boxes = [sh for sh in src.views["detections"].shapes if sh.kind == "rect" and sh.label]
    assert len(boxes) == 12 and boxes[-1].width > boxes[0].width  # the selected one last and thick
    st = src.settings
    assert st["query"] == f"q{dets[3]}" and st["detection"] == 3 and st["detections"] == dets
    assert (st["decoder_layer"], st["encoder_layer"]) == (1, 1)
    again = build(a, DetrState.from_json(json.loads(json.dumps(st))))
    assert again.settings == st
    for name, view in src.views.items():
        other = again.views[name]
        assert other.title == view.title
        np.testing.assert_array_equal(getattr(other, "values", getattr(other, "maps", None)),
                                      getattr(view, "values", getattr(view, "maps", None)))
    enc = build(a, DetrState().updated({"query": [1, 3], "direction": "to", "layer": 0}))
    assert enc.settings["focus"] == "point" and enc.settings["query"] is None
    np.testing.assert_array_equal(enc.views["attention"].values,
                                  a.encoder_attention_map(0, "mean", direction="to", cell=(1, 3)))
    assert enc.views["grid"].row_name == "encoder layer"


# -- palette and labels ----------------------------------------------------------------------------

def _linear(c):
    c = np.asarray(c[:3], float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _contrast(c1, c2):
    """WCAG 2 contrast ratio of two RGB colours."""
    l1, l2 = (float(_linear(c) @ [0.2126, 0.7152, 0.0722]) for c in (c1, c2))
    return (max(l1, l2) + 0.05) / (min(l1, l2) + 0.05)


def _lab(c):
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ _linear(c)
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_has_no_near_white_or_near_background_colour():
    colors = [box_rgba(i) for i in range(len(PALETTE))]
    assert len(set(colors)) == 12 and box_rgba(12) == colors[0]
    for c in colors:
        assert _contrast(c, (255, 255, 255)) >= 1.3, c  # not white-ish: it shows on the light theme
        assert _contrast(c, (32, 33, 36)) >= 3.0, c  # not dark: it shows on the views' background
        assert np.hypot(*_lab(c)[1:]) >= 35, c  # saturated: never read as an empty grey cell
    for c1, c2 in itertools.combinations(colors, 2):
        assert np.linalg.norm(_lab(c1) - _lab(c2)) >= 25, (c1, c2)


def _overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_labels_of_overlapping_boxes_do_not_pile_up():
    # the demo DETR's "cross 0.88" / "cross 0.89" case: boxes sharing their top-left corner
    boxes = [(100, 100, 160, 180), (104, 104, 170, 190), (100, 98, 150, 150), (300, 40, 380, 90),
             (302, 42, 378, 92), (0, 0, 60, 40)]
    sizes = [(70, 16), (70, 16), (56, 16), (80, 16), (80, 16), (60, 16)]
    bounds = (0, 0, 400, 300)
    spots = place_labels(boxes, sizes, bounds)
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes)]
    for r1, r2 in itertools.combinations(rects, 2):
        assert _overlap(r1, r2) == 0, (r1, r2)
    for (x0, y0, x1, y1), box, (w, h) in zip(rects, boxes, sizes):
        assert bounds[0] <= x0 and bounds[1] <= y0 and x1 <= bounds[2] and y1 <= bounds[3]
        # on its box's left or right edge, within a few label heights of it
        assert abs(x0 - box[0]) < 1e-9 or abs(x1 - box[2]) < 1e-9
        assert box[1] - 5 * h <= y0 <= box[3] + 4 * h
    assert spots[0] == (100, 84)  # the first (selected / best) label sits right above its box
    assert spots[5] == (0, 0)  # above would leave the image: inside, at the top
    inside = place_labels(boxes[:1], sizes[:1], bounds, inside_first=True)
    assert inside == [(100, 100)]  # exports: inside the top-left corner first


def test_crowded_labels_stay_inside_and_overlap_as_little_as_they_can():
    boxes = [(10, 10, 30, 30)] * 40  # more labels than there are spots around one box
    spots = place_labels(boxes, [(20, 10)] * 40, (0, 0, 100, 100))
    assert all(0 <= x <= 80 and 0 <= y <= 90 for x, y in spots)
    distinct = {(x, y) for x, y in spots}
    assert len(distinct) >= 8  # every free spot used before any is shared
