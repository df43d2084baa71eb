"""The Swin workspace as a user drives it: click tokens and tiles, step blocks and stages, compare
partitions. Uses the tiny real torchvision Swins of swin_helpers (18x18 tokens at stage 0, 5x5
windows shifted by 2, so the window of token (0, 0) in a shifted block wraps into four pieces)."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from vitviz.core.swin.marks import (WINDOW_COLOR, circular_span, crop_to_window, partition_segments, region_rects,
                                    token_rect, trace_lines)
from vitviz.gui.colormaps import map_values

from . import swin_helpers  # noqa: F401  (registers test_tiny_swin, test_tiny_swin_v2)
from .gui_helpers import make_window, open_and_wait, pixel_at

pytestmark = pytest.mark.gui


def _swin(qtbot, tmp_path, image_file, model="test_tiny_swin"):
    win = make_window(qtbot, tmp_path, model=model)
    a = open_and_wait(qtbot, win, image_file)
    return win, win.panels["swin"], a


def _centre(rect):
    x0, y0, x1, y1 = rect
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_click_shows_window_attention_at_true_positions_and_image_outside(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    win.display.opacity_slider.setValue(100)
    win.display.grid_check.setChecked(False)
    panel.regions_check.setChecked(False)  # hatching would tint the window's border pieces
    panel._select(stage=0, block=1)
    view, grid = panel.main_view, a.stage_grid(0)
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=view.view_to_widget(*_centre(grid.rect(0, 0))))
    assert panel.token == (0, 0)
    expected = a.attention_map(0, 1, panel.head, (0, 0))
    inside = {tuple(t) for t in a.window_tokens(0, 1, 0, 0)}
    assert len(inside) == 9 and (17, 17) in inside  # 2x2 + 2x1 + 1x2 + 1x1 across the corners
    assert view.levels == (np.nanmin(expected), np.nanmax(expected))
    photo = np.asarray(a.image)
    img = view.grab().toImage()
    ratio = img.devicePixelRatio()
    for r in range(grid.rows):
        for c in range(grid.cols):
            if (r, c) == (0, 0):
                continue  # the selection outline is drawn there
            x, y = _centre(grid.rect(r, c))
            x, y = np.floor(x) + 0.5, np.floor(y) + 0.5  # centre of one photo pixel
            p = view.view_to_widget(x, y)
            q = img.pixelColor(int(p.x() * ratio), int(p.y() * ratio))
            got = np.array([q.red(), q.green(), q.blue()])
            if (r, c) in inside:
                want = map_values(win.display.colormap, expected[r, c], *view.levels)[:3]
            else:
                assert np.isnan(expected[r, c])
                want = photo[int(y), int(x)]  # NaN is transparent: the photo itself
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 3, ((r, c) in inside, r, c, got, want)


def test_wrapped_window_is_outlined_piece_by_piece(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=1)
    grid = a.stage_grid(0)
    panel.select_token(1, 1)
    xs, ys = grid.edges()
    rects = a.window_rects(0, 1, 1, 1)
    assert len(rects) == 4
    assert panel.overlay.window_pieces == [token_rect(r, xs, ys) for r in rects]
    for x0, y0, x1, y1 in panel.overlay.window_pieces:  # drawn: white on the middle of each top edge
        got = pixel_at(panel.main_view, (x0 + x1) / 2, y0)
        assert np.abs(got.astype(int) - np.array([255, 255, 255])).max() <= 3, (x0, y0, got)
    assert WINDOW_COLOR == "#ffffff"
    # the regular block's window of the same token is one piece
    panel._select(block=0)
    assert len(panel.overlay.window_pieces) == 1


def test_partitions_regions_and_comparison(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=0)
    assert panel.overlay.regions == []  # regular block: no mask regions
    panel._select(block=1)
    labels = a.mask_regions(0, 1)
    assert sorted({lab for lab, _ in panel.overlay.regions}) == list(range(9))
    xs, ys = a.stage_grid(0).edges()
    for lab, (x0, y0, x1, y1) in panel.overlay.regions:  # every rectangle holds one label only
        c0, c1 = np.searchsorted(xs, [x0, x1])
        r0, r1 = np.searchsorted(ys, [y0, y1])
        assert (labels[r0:r1, c0:c1] == lab).all()
    line = panel.overlay.partitions[0].line
    shifted = line.getData()
    panel.partition_combo.setCurrentIndex(panel.partition_combo.findData("regular"))
    regular = line.getData()
    assert not np.array_equal(shifted[0], regular[0])
    assert panel.overlay.regions == []  # regions belong to the shifted partition
    panel.partition_combo.setCurrentIndex(panel.partition_combo.findData("both"))
    assert all(len(p.line.getData()[0]) for p in panel.overlay.partitions)
    assert len(panel.overlay.regions) == 9
    panel.partition_combo.setCurrentIndex(panel.partition_combo.findData("none"))
    assert not any(len(p.line.getData()[0]) for p in panel.overlay.partitions)


def test_tile_clicks_select_block_and_head(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=0, head="mean")
    grid = panel.grid_view
    assert grid.grid_shape == (2, 2)  # blocks x heads of stage 0
    qtbot.mouseClick(grid.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=grid.tile_center(1, 1))
    assert (panel.block, panel.head) == (1, 1)
    assert panel.block_spin.value() == 1 and panel.head_combo.currentData() == 1
    bias = panel.bias_view
    np.testing.assert_array_equal(bias.bias, a.relative_position_bias(0, 1))
    qtbot.mouseClick(bias.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=bias.tile_center(0))
    assert panel.head == 0 and panel.head_combo.currentData() == 0
    x, y = bias._origin(0)
    assert bias.selected_rect().contains(QtCore.QPointF(x + 1, y + 1))


def test_stage_switch_changes_grid_heads_and_follows_the_point(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=1)
    panel.select_token(7, 6)
    point = panel.point
    panel.stage_spin.setValue(2)
    assert (panel.stage, panel.block) == (2, 1)
    xs, ys = a.stage_grid(2).edges()
    gx, gy = panel.main_view.grid_lines.getData()
    assert np.allclose(np.unique(gx), np.unique(xs)) and np.allclose(np.unique(gy), np.unique(ys))
    assert panel.point == point
    assert panel.token == a.merge_trace(*point)[2].token
    assert panel.head_combo.count() == 3 + 4  # fusions, then the 4 heads of stage 2
    assert panel.grid_view.grid_shape == (2, 4)
    assert "shift is dropped" in panel.info_label.text()  # 5x5 map, 5x5 window
    np.testing.assert_allclose(panel.current_map(), a.attention_map(2, 1, panel.head, panel.token),
                               equal_nan=True)


def test_keys_step_blocks_through_stages_heads_token_and_summary(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=1, head="mean")
    panel.select_token(3, 3)
    view = panel.main_view
    view.setFocus()
    qtbot.keyClick(view, QtCore.Qt.Key.Key_PageDown)
    assert (panel.stage, panel.block) == (1, 0)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_PageUp)
    assert (panel.stage, panel.block) == (0, 1)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_BracketRight)
    assert panel.head == "max"
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Right)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Down)
    assert panel.token == (4, 4)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_D)
    assert panel.direction == "to"
    np.testing.assert_allclose(panel.current_map(), a.attention_map(0, 1, "max", (4, 4), "to"), equal_nan=True)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_C)
    assert panel.summary_check.isChecked()
    np.testing.assert_allclose(panel.current_map(), a.attention_summary(-1, "max"))
    assert panel.overlay.window_pieces == []
    for _ in range(len(a.blocks) + 2):  # clamps at the last block
        panel.step_layer(1)
    assert (panel.stage, panel.block) == (3, 1)


def test_merge_trace_follows_the_click(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    x, y = _centre(a.stage_grid(0).rect(9, 5))
    panel._on_image_click(x, y)
    steps = a.merge_trace(x, y)
    mv = panel.merge_view
    assert [s.stage for s in steps] == [0, 1, 2, 3]
    for s in steps:
        token_rect_, parts = mv.rects[s.stage]
        assert token_rect_ == a.stage_grid(s.stage).rect(*s.token)
        assert len(parts) == (4 if s.stage else 0)
    text = mv.text.text()
    for line in trace_lines(steps, (a.grid.cell_w, a.grid.cell_h)):
        assert line.split(";")[0] in text.replace("&lt;", "<").replace("&gt;", ">")
    panel._on_image_click(-5, 10)  # outside: nothing changes, the status bar says why
    assert panel.point == (x, y)
    assert "outside the image" in win.statusBar().currentMessage()


def test_swin_v2_runs_every_view_without_errors(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file, model="test_tiny_swin_v2")
    assert a.version == 2
    messages = []
    panel.statusMessage.connect(messages.append)
    panel._select(stage=0, block=0)
    for key, _ in (("block", 0), ("both", 0), ("shifted", 0)):
        panel.partition_combo.setCurrentIndex(panel.partition_combo.findData(key))
        for _ in range(len(a.blocks)):
            panel.step_layer(1)
            panel.step_head(1)
            panel.main_view.hovered.emit(*_centre(a.stage_grid(panel.stage).rect(0, 0)))
        panel._select(stage=0, block=0)
    panel.toggle_direction()
    panel.toggle_cls()
    panel.toggle_model_view()
    panel.main_view.hovered.emit(*_centre(a.grid.rect(2, 2)))
    assert any("attention received" in m for m in messages)
    assert any("mask region" in m for m in messages)
    s = panel.view_settings()
    assert s["family"] == "swin" and s["summary"] and s["stage"] == 0


def test_crop_helpers():
    used = np.zeros(18, bool)
    used[[0, 1, 17]] = True
    assert circular_span(used).tolist() == [17, 0, 1]  # a wrapped window, joined as the model sees it
    used[:] = False
    used[5:10] = True
    assert circular_span(used).tolist() == [5, 6, 7, 8, 9]
    assert circular_span(np.ones(4, bool)).tolist() == [0, 1, 2, 3]
    maps = np.full((2, 1, 6, 6), np.nan)
    maps[0, 0, 1:3, 2:4] = 1
    maps[1, 0, 2:4, 3:5] = 2
    assert crop_to_window(maps).shape == (2, 1, 3, 3)


def test_partition_segments_and_region_rects():
    xs, ys = np.arange(7.0) * 10, np.arange(5.0) * 10  # 4 rows x 6 cols of 10 px tokens
    part = np.array([[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2)
    segs = partition_segments(part, xs, ys)
    inner = {tuple(s) for s in segs[:-4]}
    assert inner == {(30, 0, 30, 40), (0, 20, 60, 20)}  # merged along their length
    regions = region_rects(part, xs, ys)
    assert regions == [(0, (0, 0, 30, 20)), (1, (30, 0, 60, 20)), (2, (0, 20, 30, 40)), (3, (30, 20, 60, 40))]


def test_export_every_view_and_the_cli_layer_and_query(qtbot, tmp_path, image_file):
    from vitviz.gui.export import ExportContext, ExportError, ExportRequest, export_sources_to_file

    win, panel, a = _swin(qtbot, tmp_path, image_file)
    panel._select(stage=0, block=1)
    panel.select_token(0, 0)
    src = panel.export_sources()
    assert src.settings["token"] == [0, 0] and src.current == "attention"
    pieces = [sh for sh in src.views["windows"].shapes if sh.kind == "rect" and sh.width == 3.0]
    xs, ys = a.stage_grid(0).edges()
    assert [sh.coords for sh in pieces] == [token_rect(r, xs, ys) for r in a.window_rects(0, 1, 0, 0)]
    assert sorted(int(sh.label) for sh in src.views["windows"].shapes if sh.label) == list(range(9))
    ctx = ExportContext.from_analysis(a, image_path=str(image_file), weights="random")
    for views in (["attention"], ["windows"], ["summary"], ["grid"], ["bias"], ["head:1"], ["attention", "head:0"]):
        res = export_sources_to_file(src, ExportRequest(views, width=400), ctx, str(tmp_path / f"{views[0]}.png"))
        assert (tmp_path / f"{views[0]}.png").read_bytes().startswith(b"\x89PNG"), res
    # CLI keys: "layer" counts blocks over all stages, "query" is a token of that stage
    s = panel.export_sources({"layer": -1, "query": [1, 2]}).settings
    assert (s["stage"], s["block"], s["token"]) == (3, 1, [1, 2])
    s = panel.export_sources({"layer": 2, "query": "cls"}).settings
    assert (s["stage"], s["block"]) == (1, 0) and s["token"] == list(a.stage_grid(1).token_at(*panel.point))
    for bad, msg in (({"layer": 8}, "layer 8 is out of range"), ({"head": 2}, "head 2 is out of range"),
                     ({"query": [18, 0], "layer": 0}, "outside the 18x18 grid")):
        with pytest.raises(ExportError, match=msg):
            panel.export_sources(bad)
