"""DETR query-slot specialisation (the DETR paper's Fig. 7): every slot's box over a folder, against
the model's own outputs caught with a forward hook; the tile grid's geometry; the analyses window's
"DETR queries" tab on the image on screen and over a folder, a click on a slot listing where it fired."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6 import QtCore

import vitviz
from vitviz.core.analysis.detr_queries import (LARGE_AREA, TILE_GAP, QuerySpecialisation, from_analysis,
                                               grid_columns, scatter_points, size_class, specialisation,
                                               summary, tile_at, tile_origin)
from vitviz.core.analysis.over_images import measure_many

SAMPLES = Path(vitviz.__file__).resolve().parents[1] / "resources" / "samples"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("detr_imgs")
    for name in ("shapes_detect_1.png", "shapes_detect_2.png"):
        shutil.copy(SAMPLES / name, d / name)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(d / "noise.png")
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    return d


def test_slot_boxes_over_a_folder_match_the_models_own_outputs(folder):
    from vitviz.core.api import get_model
    from vitviz.core.batch.folder import list_images

    lm = get_model("demo_detr", "pretrained", cache=False)
    seen = []  # the model's own outputs, image by image (equal-sized inputs share a forward)
    handle = lm.module.register_forward_hook(lambda m, args, out: seen.extend(
        zip(out["pred_logits"].float().numpy().copy(), out["pred_boxes"].float().numpy().copy())))
    try:
        res = measure_many(list_images([folder]), ["query_boxes"], lm, workers=0, on_error="yield")
    finally:
        handle.remove()
    spec = specialisation(res, threshold=0.5)
    assert [Path(s).name for s in spec.sources] == ["noise.png", "shapes_detect_1.png", "shapes_detect_2.png"]
    assert [Path(s).name for s, _ in res.failures] == ["broken.jpg"]
    assert len(seen) == 3 and spec.boxes.shape == (3, 12, 6)
    for i, (logits, boxes) in enumerate(seen):
        e = np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True))
        p = (e / e.sum(-1, keepdims=True))[:, :-1]  # no-object (last) dropped after the softmax
        np.testing.assert_allclose(spec.boxes[i, :, :4], boxes, atol=1e-6)
        np.testing.assert_allclose(spec.boxes[i, :, 4], p.max(-1), atol=1e-6)
        assert np.array_equal(spec.boxes[i, :, 5], p.argmax(-1))
        for q in range(12):  # size classes as the module docstring defines them
            w, h = boxes[q, 2], boxes[q, 3]
            want = "small" if w * h < LARGE_AREA else ("horizontal" if w >= h else "vertical")
            assert size_class(spec.boxes[i, q]) == want
    # fired: the images where a slot's best real-class probability (from the hook) beats the threshold
    best = []
    for logits, _ in seen:
        e = np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True))
        best.append((e / e.sum(-1, keepdims=True))[:, :-1].max(-1))
    for q in range(12):
        assert spec.fired(q) == [s for s, b in zip(spec.sources, best) if b[q] > 0.5]
    assert any(spec.fired(q) for q in range(12))  # the demo DETR finds its shapes on the samples


def test_grid_geometry_and_points():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 1, (3, 7, 4)), rng.uniform(0, 1, (3, 7, 1)),
                            rng.integers(0, 3, (3, 7, 1))], -1)
    spec = QuerySpecialisation(boxes, ["a", "b", "c"], 0.5)
    assert grid_columns(7) == 3 and grid_columns(100) == 10 and grid_columns(1) == 1
    pts = scatter_points(spec)
    assert len(pts["x"]) == 21
    for k in range(21):
        i, q = divmod(k, 7)  # image-major, slot-minor
        assert (pts["image"][k], pts["query"][k]) == (i, q)
        r, c = divmod(q, 3)
        assert pts["x"][k] == pytest.approx(c * (1 + TILE_GAP) + boxes[i, q, 0])
        assert pts["y"][k] == pytest.approx(r * (1 + TILE_GAP) + boxes[i, q, 1])
        assert tile_at(pts["x"][k], pts["y"][k], 7, 3) == q  # every point lies in its own slot's square
    assert tile_origin(5, 3) == pytest.approx((2 * (1 + TILE_GAP), 1 + TILE_GAP))
    assert tile_at(1 + TILE_GAP / 2, 0.5, 7, 3) is None  # in a gap
    assert tile_at(1.2 * (1 + TILE_GAP), 2.5 * (1 + TILE_GAP), 7, 3) is None  # past the last slot
    assert tile_at(-0.1, 0.5, 7, 3) is None
    text = summary(spec, 4)
    n_fired = int((boxes[:, 4, 4] > 0.5).sum())
    assert text.startswith("slot 4: ") and text.endswith(f"on {n_fired}") and "over 3 image(s)" in text


def test_from_analysis_is_the_one_image_case(folder):
    a = vitviz.analyze(folder / "shapes_detect_1.png", model="demo_detr")
    one = from_analysis(a, 0.7)
    assert one.boxes.shape == (1, 12, 6) and one.sources == ["the image on screen"]
    np.testing.assert_allclose(one.boxes[0, :, :4], a.boxes)
    assert sum(bool(one.fired(q)) for q in range(12)) == len(a.detections(0.7))


@pytest.mark.gui
def test_window_tab_on_the_image_and_over_a_folder(qtbot, folder):
    from vitviz.gui.analyses_window import DETR_TAB, AnalysesWindow

    win = AnalysesWindow()
    qtbot.addWidget(win)
    win.resize(1000, 640)
    win.show()
    qtbot.waitExposed(win)
    a = vitviz.analyze(folder / "shapes_detect_1.png", model="demo_detr")
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.set_analysis(a)
    view = win.detr_view
    assert win.tabs.currentIndex() == DETR_TAB and win.tabs.isTabEnabled(DETR_TAB)
    assert not win.tabs.isTabEnabled(0)
    assert len(view.scatter.points()) == 12 and "12 query slots" in win.status.text()
    xy = sorted((p.pos().x(), p.pos().y()) for p in view.scatter.points())
    want = scatter_points(from_analysis(a))
    np.testing.assert_allclose(np.array(xy), np.array(sorted(zip(want["x"], want["y"]))), atol=1e-6)
    with qtbot.waitSignal(win.folder_bar.finished, timeout=60000):
        assert win.folder_bar.start(folder)
    spec = specialisation(win.folder)
    assert len(view.scatter.points()) == 3 * 12 and view.spec.boxes.shape == (3, 12, 6)
    assert "over 3 images of the folder" in view.note.text()
    # click the square of the slot that fired most: the list names those images
    q = int(np.argmax([len(spec.fired(i)) for i in range(12)]))
    x0, y0 = tile_origin(q, view.columns)
    vb = view.plot.vb
    pos = view.view.mapFromScene(vb.mapViewToScene(QtCore.QPointF(x0 + 0.5, y0 + 0.5)))
    qtbot.mouseClick(view.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    assert view.selected == q
    listed = [view.fired_list.item(i).text().split("  ")[0] for i in range(view.fired_list.count())]
    assert listed == [Path(s).name for s in spec.fired(q)] and listed
    view.threshold.setValue(1.0)  # nothing beats a score of 1
    assert view.fired_list.count() == 0 and view.slot_label.text().endswith("on 0:")
    win.source_box.setCurrentIndex(0)  # back to the image on screen
    assert len(view.scatter.points()) == 12
    win.close()
