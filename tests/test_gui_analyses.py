"""The analyses window: the scatter shows each head's value, hover names it, a click emits
select(layer, head); entropy toggles; position-similarity tiles and DINO contours; computed in a
worker thread with superseded results dropped."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6 import QtCore

import vitviz
from vitviz.gui.analyses_window import AnalysesWindow, open_analyses_window


@pytest.fixture(scope="module")
def analysis():
    from pathlib import Path

    sample = Path(vitviz.__file__).resolve().parents[1] / "resources" / "samples" / "shapes_classify_1.png"
    return vitviz.analyze(sample, model="demo_vit")  # trained: masks grow with the mass kept


def shown(qtbot, win, analysis):
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.set_analysis(analysis)
    return win


@pytest.fixture
def win(qtbot):
    w = AnalysesWindow()
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_scatter_has_one_dot_per_head_at_its_value_and_entropy_toggles(qtbot, win, analysis):
    shown(qtbot, win, analysis)
    dist = analysis.analyse("attention_distance")
    pts = win.scatter.points()
    assert len(pts) == 4 * 4
    for p in pts:
        layer, head = p.data()
        assert abs(p.pos().x() - layer) <= 0.25 and p.pos().y() == pytest.approx(dist[layer, head])
    win.entropy_box.setChecked(True)
    ent = analysis.analyse("attention_entropy")
    assert sorted(p.pos().y() for p in win.scatter.points()) == pytest.approx(sorted(ent.ravel()))
    assert "entropy" in win.scatter_plot.getAxis("left").labelText


def test_clicking_a_dot_emits_select_and_hover_shows_the_value(qtbot, win, analysis):
    shown(qtbot, win, analysis)
    dist = analysis.analyse("attention_distance")
    x, y, layer, head = next(d for d in win.dot_positions() if (d[2], d[3]) == (2, 1))
    vb = win.scatter_plot.getPlotItem().vb
    pos = win.scatter_plot.mapFromScene(vb.mapViewToScene(QtCore.QPointF(x, y)))
    with qtbot.waitSignal(win.select, timeout=3000) as blocker:
        qtbot.mouseClick(win.scatter_plot.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [2, 1]
    assert win.hover_label.text().startswith(f"layer 2, head 1: distance {dist[2, 1]:.2f} px")


def test_position_tiles_and_dino_contours(qtbot, win, analysis):
    shown(qtbot, win, analysis)
    grid = win.position_grid
    assert grid.grid_shape == (8, 8) and grid.tile_shape == (8, 8)
    assert len(win.contours) == 4
    masks = analysis.analyse("dino_masks", threshold=0.6)
    names = [item.name() for item in win.contours]
    assert names == [f"head {h} ({int(masks[h].sum())} patches)" for h in range(4)]
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.threshold.setValue(0.9)
    more = analysis.analyse("dino_masks", threshold=0.9)
    assert np.array_equal(win.results["dino_masks"], more) and more.sum() > masks.sum()


def test_computed_in_a_worker_and_stale_results_dropped(qtbot, win, analysis, monkeypatch):
    import vitviz.core.analysis.distance as distance

    threads = []
    real = distance.vit
    monkeypatch.setattr(distance, "vit", lambda a: threads.append(threading.get_ident()) or real(a))
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.set_analysis(analysis)
        assert win.results == {}  # nothing computed in the GUI thread before returning
        win.threshold.setValue(0.3)  # supersedes the first request
    qtbot.wait(200)
    assert threads and threading.get_ident() not in threads
    assert np.array_equal(win.results["dino_masks"], analysis.analyse("dino_masks", threshold=0.3))


def test_non_vit_and_open_function(qtbot, analysis):
    from PySide6 import QtWidgets

    host = QtWidgets.QWidget()
    qtbot.addWidget(host)
    w = open_analyses_window(host)
    assert open_analyses_window(host) is w and w.isVisible()

    class Other:
        family = "other"

    w.set_analysis(Other())
    assert "for ViT, Swin and DETR models" in w.status.text() and len(w.scatter.points()) == 0
    with qtbot.waitSignal(w.resultsShown, timeout=30000):
        assert open_analyses_window(host, analysis) is w
    w.close()
    assert w._pool.activeThreadCount() == 0  # closing waits for the running computation


def test_swin_shows_distance_per_block_and_no_vit_tabs(qtbot, win):
    from tests.swin_helpers import TINY_SWIN  # noqa: F401 (registers test_tiny_swin)

    a = vitviz.analyze(np.full((80, 80, 3), 120, np.uint8), model="test_tiny_swin")
    shown(qtbot, win, a)
    dist = a.analyse("attention_distance")
    pts = win.scatter.points()
    assert len(pts) == sum(b.heads for b in a.blocks) == 24
    assert sorted(p.pos().y() for p in pts) == pytest.approx(sorted(dist[np.isfinite(dist)]))
    assert not win.tabs.isTabEnabled(1) and not win.tabs.isTabEnabled(2)
    assert "8 blocks over 4 stages" in win.status.text()
    assert win.value_text(7, 3).startswith("block 7, head 3: distance")


def test_token_norms_tab_computes_on_demand_and_lists_prefix_tokens(qtbot, win):
    import tests.test_analyses  # noqa: F401 (registers test_reg_vit)

    a = vitviz.analyze(np.full((64, 64, 3), 90, np.uint8), model="test_reg_vit")
    shown(qtbot, win, a)
    assert "token_norms" not in win.results  # a forward of its own: only when the tab is shown
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.tabs.setCurrentIndex(3)
    norms = a.analyse("token_norms")
    np.testing.assert_allclose(win.results["token_norms"], norms)
    x, counts = win.hist.getData()
    assert counts.sum() == 4 + 36
    assert [line.label.toPlainText() for line in win.prefix_lines] == \
        ["class", "distillation", "register 0", "register 1"]
    assert "register 1 " + f"{norms[-1, 3]:.1f}" in win.norms_label.text()
    win.norm_layer.setValue(0)
    assert win.norms_label.text().startswith("Layer 0 output")


def test_clicking_a_position_tile_shows_that_patch_over_the_image(qtbot, win, analysis):
    from vitviz.core.colormaps import overlay_rgba

    shown(qtbot, win, analysis)
    win.tabs.setCurrentIndex(1)
    qtbot.wait(50)
    grid = win.position_grid
    qtbot.mouseClick(grid.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=grid.tile_center(2, 5))
    assert win.patch == (2, 5)
    sim = analysis.analyse("position_similarity")
    assert np.array_equal(win.patch_overlay.image, overlay_rgba(sim[2, 5], "viridis", -1.0, 1.0, 0.75))
    assert "patch (row 2, col 5)" in win.patch_plot.titleLabel.text


def test_patch_filter_tiles(qtbot, win):
    a = vitviz.analyze(np.full((64, 64, 3), 90, np.uint8), model="test_tiny_vit", weights="random")
    shown(qtbot, win, a)
    comps = a.analyse("patch_filters", k=28)
    img = win.filters_image.image
    assert img.shape == (4 * 16 + 3 * 2, 7 * 16 + 6 * 2, 4)  # 28 tiles of 16 x 16, 4 rows of 7
    np.testing.assert_array_equal(img[18:34, 18:34, :3], np.floor(comps[8] * 255 + 0.5).astype(np.uint8))
    assert "first 28 principal components" in win.filters_note.text()
    shown(qtbot, win, vitviz.analyze(np.full((64, 64, 3), 90, np.uint8), model="demo_vit"))
    assert "convolutional stem" in win.filters_note.text()


def test_deleting_the_parent_window_mid_computation_is_safe(qtbot, analysis):
    from PySide6 import QtWidgets

    from vitviz.gui import analyses_window as aw

    host = QtWidgets.QWidget()
    w = open_analyses_window(host, analysis)
    for t in (0.3, 0.4, 0.5):  # pending requests, superseded
        w.threshold.setValue(t)
    host.deleteLater()  # the window goes with its parent, without a closeEvent
    qtbot.waitUntil(lambda: not aw._RUNNING, timeout=30000)
    qtbot.wait(100)  # a late result is delivered to nobody
