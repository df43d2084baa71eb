"""The DETR workspace as a user drives it: threshold, boxes, points, keys, the query matrix,
padding, and a checkpoint that does not fit."""
import dataclasses

import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from vitviz.gui.colormaps import map_values

from .gui_helpers import make_window, open_and_wait, pixel_at
from .test_detr_api import TINY_DETR  # noqa: F401 (registers test_tiny_detr)
from tests.helpers import random_png

pytestmark = pytest.mark.gui

LEFT = QtCore.Qt.MouseButton.LeftButton
SHIFT = QtCore.Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def image_file(tmp_path):
    return random_png(tmp_path / "img.png", (90, 150, 3), seed=3)


def spread_boxes(a):
    """The same analysis with its 12 queries' boxes laid out 4 x 3, apart (random DETRs stack them)."""
    i = np.arange(a.num_queries)
    boxes = np.stack([(i % 4 + 0.5) / 4, (i // 4 + 0.5) / 3, np.full(i.shape, 0.15), np.full(i.shape, 0.2)], 1)
    return dataclasses.replace(a, boxes=boxes.astype(np.float32))


def expected_rgba(values, cmap, lo, hi):
    rgba = map_values(cmap, np.nan_to_num(values, nan=lo), lo, hi)
    rgba[np.isnan(values)] = 0
    return rgba


def check_view_shows(view, values, cmap):
    """The view's overlay holds exactly `values` through the colormap, scaled to their range."""
    finite = values[np.isfinite(values)]
    assert view.levels == (finite.min(), finite.max())
    np.testing.assert_array_equal(view.overlay.image, expected_rgba(values, cmap, *view.levels))


def click(qtbot, view, x, y, modifier=QtCore.Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(view.viewport(), LEFT, modifier, pos=view.view_to_widget(x, y))


@pytest.fixture
def detr_window(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_detr")
    a = open_and_wait(qtbot, win, image_file)
    return win, a


def test_no_box_above_threshold_says_so_and_offers_the_best(qtbot, detr_window):
    win, a = detr_window
    panel = win.panels["detr"]
    assert a.best_scores().max() < 0.7  # untrained: nothing is confident
    assert panel.detections == [] and panel.query is None
    assert not panel.hint_label.isHidden() and "No object scores above 0.7" in panel.hint_label.text()
    assert panel.det_view.overlay.image is None  # no object: no cross-attention map
    # the point still works without any detection
    assert panel.cell is not None and panel.enc_view.overlay.image is not None
    panel._on_hint_link("top")
    assert len(panel.detections) == 5 and panel.det_list.count() == 5
    assert panel.hint_label.isHidden()
    assert panel.query == panel.detections[0].query
    assert [d.query for d in panel.detections] == list(np.argsort(-a.best_scores(), kind="stable")[:5])


def test_select_box_and_point_show_the_api_maps(qtbot, detr_window):
    win, a = detr_window
    panel = win.panels["detr"]
    win.display.opacity_slider.setValue(100)
    win.display.grid_check.setChecked(False)
    a = spread_boxes(a)
    panel.set_analysis(a)
    panel.set_threshold(0.0)
    assert len(panel.detections) == 12 and len(panel.boxes.rects) == 12
    cmap = win.display.colormap

    # click inside a box: that object's cross-attention, its layers x heads grid
    det = next(d for d in panel.detections if d.query == 6)
    x0, y0, x1, y1 = det.box
    click(qtbot, panel.det_view, (x0 + x1) / 2, (y0 + y1) / 2)
    assert panel.query == 6 and panel.focus == "query"
    check_view_shows(panel.det_view, a.cross_attention(panel.decoder_layer, panel.head, 6), cmap)
    assert panel.grid_view.grid_shape == (3, 4) and panel.grid_view.tile_shape == (4, 7)
    assert panel.det_list.currentItem().data(QtCore.Qt.ItemDataRole.UserRole) == 6

    # click a label tag (above its box)
    det9 = next(d for d in panel.detections if d.query == 9)
    label = panel.boxes.labels[9]
    pos = panel.det_view.mapFromScene(label.sceneBoundingRect().center())
    assert det9.box[1] > 0 and label.sceneBoundingRect().center().y() < \
        panel.det_view.vb.mapViewToScene(QtCore.QPointF(0, det9.box[1])).y()
    qtbot.mouseClick(panel.det_view.viewport(), LEFT, pos=pos)
    assert panel.query == 9

    # head and layer change the decoder map
    panel.step_head(4)  # mean, max, min, head 0, head 1
    assert panel.head == 1
    panel.step_layer(-1)
    check_view_shows(panel.det_view, a.cross_attention(1, 1, 9), cmap)

    # Shift+click inside a box probes the encoder instead
    px, py = (x0 + x1) / 2 + 3, (y0 + y1) / 2 + 2
    click(qtbot, panel.det_view, px, py, SHIFT)
    assert panel.query == 9 and panel.cell == a.cell_at(px, py) and panel.focus == "point"
    check_view_shows(panel.enc_view, a.encoder_attention_map(1, 1, (px, py), "from"), cmap)
    assert panel.grid_view.grid_shape == (2, 4)

    # a click in the encoder view; rendered pixels carry the API values
    r, c = 1, 4
    cx, cy = a.cell_center(r, c)
    click(qtbot, panel.enc_view, cx, cy)
    assert panel.cell == (r, c)
    expected = a.encoder_attention_map(panel.encoder_layer, panel.head, cell=(r, c))
    check_view_shows(panel.enc_view, expected, cmap)
    lo, hi = panel.enc_view.levels
    for rr in range(a.grid.rows):
        for cc in range(a.grid.cols):
            if (rr, cc) == (r, c):
                continue  # the point marker and the cell outline are drawn there
            x, y = a.cell_center(rr, cc)
            got = pixel_at(panel.enc_view, min(x, a.image.width - 1), min(y, a.image.height - 1))
            want = map_values(cmap, expected[rr, cc], lo, hi)[:3]
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 2, (rr, cc, got, want)

    # D: attention to the point; arrow keys move it one cell
    panel.toggle_direction()
    check_view_shows(panel.enc_view, a.encoder_attention_map(panel.encoder_layer, 1, cell=(r, c), direction="to"), cmap)
    panel.enc_view.setFocus()
    qtbot.keyClick(panel.enc_view, QtCore.Qt.Key.Key_Right)
    qtbot.keyClick(panel.enc_view, QtCore.Qt.Key.Key_Down)
    assert panel.cell == (2, 5)
    for _ in range(5):
        qtbot.keyClick(panel.enc_view, QtCore.Qt.Key.Key_Right)
    assert panel.cell == (2, 6)  # stops at the last column
    check_view_shows(panel.enc_view, a.encoder_attention_map(panel.encoder_layer, 1, cell=(2, 6), direction="to"), cmap)

    # C: the grid goes back to the object; a tile click picks layer and head
    panel.toggle_cls()
    assert panel.focus == "query" and panel.grid_view.grid_shape == (3, 4)
    grid = panel.grid_view
    qtbot.mouseClick(grid.viewport(), LEFT, pos=grid.tile_center(2, 3))
    assert (panel.layer, panel.head) == (2, 3)
    check_view_shows(panel.det_view, a.cross_attention(2, 3, 9), cmap)


def test_query_matrix_matches_api_and_selects(qtbot, detr_window):
    win, a = detr_window
    panel = win.panels["detr"]
    panel._on_hint_link("top")
    queries = [d.query for d in panel.detections]
    m = panel.matrix_view
    expected = a.decoder_self_attention(panel.decoder_layer, panel.head, queries)
    np.testing.assert_array_equal(m.values, expected)
    assert m.levels == (expected.min(), expected.max())
    np.testing.assert_array_equal(m.image.image, map_values(win.display.colormap, expected, *m.levels))
    qtbot.mouseClick(m.viewport(), LEFT, pos=m.cell_center(3, 1))
    assert panel.query == queries[3]
    assert panel.boxes.selected == queries[3]
    assert panel.det_list.currentRow() == 3
    # one colour per detection, the same for its box, its list icon and its matrix row and column
    colors = [panel.boxes.colors[q].name() for q in queries]
    assert len(set(colors)) == 5
    brushes = [b.color().name() for b in m.markers.data["brush"]]
    assert brushes == colors + colors
    icons = [panel.det_list.item(i).icon().pixmap(8, 8).toImage().pixelColor(4, 4).name() for i in range(5)]
    assert icons == colors


def test_padding_never_shows_attention(qtbot, detr_window):
    from vitviz.core.api import get_model
    from vitviz.core.capture.detr_run import run

    win, a = detr_window
    panel = win.panels["detr"]
    win.display.opacity_slider.setValue(100)
    win.display.grid_check.setChecked(False)
    padded = run(get_model("test_tiny_detr", "random"), a.image, pad_to=96)
    assert padded.pad_mask.any()
    panel.set_analysis(padded)
    panel.set_threshold(0.0)
    panel.select_query(padded.detections(0.0)[0].query)
    panel.select_cell(3, 6)  # the last real cell
    pad = padded.pad_mask
    for view in (panel.det_view, panel.enc_view):
        img = view.overlay.image
        assert img.shape[:2] == pad.shape
        assert (img[pad][:, 3] == 0).all() and (img[~pad][:, 3] == 255).all()
    # rendered: a padding cell beyond the image shows the background, not a colour
    ex0, ey0, ex1, ey1 = padded.grid.extent()
    panel.enc_view.vb.setRange(xRange=(ex0, ex1), yRange=(ey0, ey1), padding=0.05)
    qtbot.wait(50)
    x0, y0, x1, y1 = padded.grid.rect(5, 8)
    assert (pixel_at(panel.enc_view, (x0 + x1) / 2, (y0 + y1) / 2) == (32, 33, 36)).all()
    # arrow keys never walk into the padding
    panel.move_point(1, 1)
    assert panel.cell == (3, 6)
    # the heads grid paints padding black
    tile = panel.grid_view.image.image[:6, :9]
    assert (tile[pad][:, :3] == 0).all()


def test_mismatched_checkpoint_lists_keys_and_keeps_the_model(qtbot, detr_window, tmp_path):
    import torch

    from vitviz.core.api import get_model

    win, a = detr_window
    panel = win.panels["detr"]
    sd = dict(get_model("test_tiny_detr", "random").module.state_dict())
    sd.pop("class_embed.weight")
    sd["transformer.decoder.layers.9.norm1.weight"] = torch.ones(64)
    bad = tmp_path / "bad_detr.pth"
    torch.save({"model": sd}, bad)
    with qtbot.waitSignal(win.runner.errorRaised, timeout=60000):
        win.set_model("test_tiny_detr", str(bad))
    assert "missing keys" in win.last_error and "class_embed.weight" in win.last_error
    assert "unexpected keys" in win.last_error and "transformer.decoder.layers.9.norm1.weight" in win.last_error
    assert win.analysis is a and panel.analysis is a
    assert win.model == "test_tiny_detr"
    assert win.stack.currentWidget() is panel


def _tick_texts(axis):
    """The tick labels pyqtgraph draws on `axis` (it drops those that leave the axis), with their rects."""
    from PySide6 import QtGui

    img = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_RGB32)
    p = QtGui.QPainter(img)
    try:
        specs = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [(rect, text) for rect, _, text in specs[2]]


def test_matrix_labels_every_row_at_any_count(qtbot):
    from vitviz.gui.views.boxes import QueryMatrixView, box_color

    m = QueryMatrixView()
    qtbot.addWidget(m)
    m.resize(300, 260)
    m.show()
    qtbot.waitExposed(m)
    for k in (11, 30):
        values = np.random.default_rng(k).random((k, k)).astype(np.float32)
        labels = [f"q{90 + i}" for i in range(k)]
        m.set_matrix(values, labels, [box_color(i) for i in range(k)])
        qtbot.wait(20)
        m._update_ticks()
        left = _tick_texts(m.plot.getAxis("left"))
        top = _tick_texts(m.plot.getAxis("top"))
        assert [t for _, t in left] == labels  # every row, in order (was every other row at 11)
        cols = [t.lstrip("q") for _, t in top]  # columns: without the "q" when narrow, thinned when narrower
        step = int(cols[1]) - int(cols[0])
        assert cols == [str(90 + i) for i in range(0, k, step)] and step <= 3
        for texts in (left, top):
            for (r1, _), (r2, _) in zip(texts, texts[1:]):
                inter = r1.intersected(r2)
                assert inter.width() * inter.height() <= 1.0, (k, r1, r2)  # legible: they do not overlap


def test_box_labels_on_screen_avoid_each_other(qtbot, detr_window):
    win, a = detr_window
    panel = win.panels["detr"]
    i = np.arange(a.num_queries)
    # every box on nearly the same spot, as a detector stacks duplicates: their tags would pile up
    boxes = np.stack([0.5 + 0.01 * (i % 3), 0.55 + 0.01 * (i % 2), np.full(i.shape, 0.3), np.full(i.shape, 0.4)], 1)
    panel.set_analysis(dataclasses.replace(a, boxes=boxes.astype(np.float32)))
    s = np.sort(a.best_scores())[::-1]
    panel.set_threshold(float(s[5] + s[6]) / 2)  # six detections
    qtbot.wait(20)
    rects = [panel.boxes.labels[d.query].sceneBoundingRect() for d in panel.detections]
    assert len(rects) == 6
    view = panel.det_view.vb.sceneBoundingRect()
    for r in rects:
        assert view.adjusted(-1, -1, 1, 1).contains(r)
    for r1, r2 in zip(rects, rects[1:]):
        inter = r1.intersected(r2)
        assert inter.width() <= 2.5 or inter.height() <= 2.5, (r1, r2)
    for j, r in enumerate(rects):
        for r2 in rects[j + 1:]:
            inter = r.intersected(r2)
            assert inter.width() <= 2.5 or inter.height() <= 2.5, (r, r2)
    # the selected object's tag chooses first: right above its box
    q = panel.detections[3].query
    panel.select_query(q)
    label = panel.boxes.labels[q].sceneBoundingRect()
    top = panel.det_view.vb.mapViewToScene(QtCore.QPointF(panel.boxes.boxes[q][0], panel.boxes.boxes[q][1]))
    assert abs(label.bottom() - top.y()) < 1.5 and abs(label.left() - top.x()) < 1.5


def test_panel_holds_a_state_and_exports_from_it(qtbot, detr_window):
    from vitviz.core.detr.state import DetrState

    win, a = detr_window
    panel = win.panels["detr"]
    panel.set_threshold(0.0)
    panel.select_query(panel.detections[2].query)
    panel.select_cell(1, 2)
    assert isinstance(panel.state, DetrState)
    assert (panel.state.query, panel.state.cell, panel.state.detection) == (panel.detections[2].query, (1, 2), 2)
    settings = panel.export_sources().settings
    assert settings["query"] == f"q{panel.query}" and settings["cell"] == [1, 2] and settings["focus"] == "point"
    assert DetrState.from_json(settings).resolved(a) == panel.state.replace(focus="point")
    # M: DETR has no model view; the window says so in the status bar
    action = next(act for act in win.actions() if act.shortcut().toString() == "M")
    action.trigger()
    assert "not available for DETR" in win.statusBar().currentMessage()
