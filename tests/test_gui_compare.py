"""The comparison window: maps side by side (linked, titled, shared or own scale), deletion / insertion
curves and the AUC table computed in its worker (progress, cancel), the sanity flag, one-figure export."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

import vitviz
from vitviz.gui.compare_window import CompareWindow, open_compare_window

pytestmark = pytest.mark.gui


def _scene(i: int, size: int = 96):
    from vitviz.demo.scenes import TEST_SEED, classification_scene

    return classification_scene(TEST_SEED + 61_000 + i, size)[0]


@pytest.fixture(scope="module")
def analysis():
    return vitviz.analyze(_scene(0), model="demo_vit")


@pytest.fixture
def win(qtbot):
    w = CompareWindow()
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.cancel()
    w._pool.waitForDone(30000)


def shown(qtbot, win, analysis, methods=("attention", "rollout", "relevance")):
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.set_analysis(analysis)
    if set(win.chosen_methods()) != set(methods):
        with qtbot.waitSignal(win.mapsShown, timeout=60000):
            win.set_methods(methods)
    return win


def test_maps_side_by_side_titled_linked_and_equal_to_explain(qtbot, win, analysis):
    shown(qtbot, win, analysis)
    t = int(np.argmax(analysis.logits))
    assert list(win.plots) == ["attention layer=-1 head=mean", "rollout", "relevance"]
    ref = {"attention layer=-1 head=mean": analysis.explain("attention", layer=-1, head="mean"),
           "rollout": analysis.rollout(), "relevance": analysis.explain("relevance", target=t)}
    for key, over in win.overlays.items():
        assert np.allclose(over.image, ref[key], atol=1e-6)
    titles = {k: p.titleLabel.text for k, p in win.plots.items()}
    assert "Attention" in titles["attention layer=-1 head=mean"] and "layer=-1, head=mean" in titles["attention layer=-1 head=mean"]
    assert "Rollout" in titles["rollout"] and "discard_ratio=0.0" in titles["rollout"]
    assert "start_layer=0" in titles["relevance"]
    # linked pan / zoom: zooming the last view moves the first
    views = [p.vb for p in win.plots.values()]
    qtbot.wait(50)  # the window fits its views once laid out (a queued call): let it run first
    before = views[0].viewRange()[0]
    views[-1].setXRange(10, 30, padding=0)
    qtbot.wait(50)
    x0, x1 = views[0].viewRange()[0]
    assert x1 - x0 < (before[1] - before[0]) / 2 and abs((x0 + x1) / 2 - 20) < 3
    # a click's token is marked in every view, its values read out
    win.select_token(2, 3)
    g = analysis.grid
    for mark in win.marks.values():
        assert mark.isVisible() and mark.rect() == QtCore.QRectF(3 * g.cell_w, 2 * g.cell_h, g.cell_w, g.cell_h)
    assert f"{ref['rollout'][2, 3]:.4g}" in win.status.text()


def test_one_scale_or_each_its_own(qtbot, win, analysis):
    shown(qtbot, win, analysis)
    own = {k: tuple(o.levels) for k, o in win.overlays.items()}
    assert len(set(own.values())) == 3
    assert own["rollout"] == pytest.approx((analysis.rollout().min(), analysis.rollout().max()))
    win.shared_box.setChecked(True)
    shared = {tuple(o.levels) for o in win.overlays.values()}
    lo = min(float(np.min(o.image)) for o in win.overlays.values())
    hi = max(float(np.max(o.image)) for o in win.overlays.values())
    assert len(shared) == 1 and next(iter(shared)) == pytest.approx((lo, hi))
    bars = [i for i in win.maps_view.ci.items if type(i).__name__ == "ColorBarItem"]
    assert len(bars) == 1
    win.shared_box.setChecked(False)
    assert len([i for i in win.maps_view.ci.items if type(i).__name__ == "ColorBarItem"]) == 3


def test_curves_and_table_equal_the_core_and_export(qtbot, win, analysis, tmp_path):
    shown(qtbot, win, analysis, ("rollout", "relevance"))
    win.steps_spin.setValue(6)
    seen = []
    win._signals.progress.connect(lambda rid, p, what: seen.append(p))
    with qtbot.waitSignal(win.curvesShown, timeout=120000) as blocker:
        win.run_curves()
    assert blocker.args == [""]
    assert list(win.curves) == ["rollout", "relevance", "random"]
    for key, method in (("rollout", "rollout"), ("relevance", "relevance"), ("random", "random")):
        f = analysis.faithfulness(method, steps=6)
        assert np.allclose(win.curves[key].deletion, f.deletion, atol=1e-6)
        assert np.allclose(win.curves[key].insertion, f.insertion, atol=1e-6)
    rows = {win.table.item(r, 0).text(): r for r in range(win.table.rowCount())}
    assert set(rows) == {"Rollout", "Relevance", "random"}
    assert win.table.item(rows["Relevance"], 1).text() == f"{analysis.faithfulness('relevance', steps=6).deletion_auc:.3f}"
    assert len(win.deletion_plot.getPlotItem().legend.items) == 3
    assert max(seen) == 1000 and seen == sorted(seen)
    out = tmp_path / "cmp.png"
    win.export_png(out)
    img = QtGui.QImage(str(out))
    maps, curves = win.maps_view.grab(), win.curves_box.grab()
    assert img.height() >= maps.height() + curves.height() and img.width() >= maps.width()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    assert arr.std() > 10  # drawn, not blank


def test_cancel_stops_the_run(qtbot, win, analysis):
    shown(qtbot, win, analysis, ("rollout",))
    win.steps_spin.setValue(400)
    with qtbot.waitSignal(win.curvesShown, timeout=60000) as blocker:
        win.run_curves()
        assert not win.run_button.isEnabled() and win.cancel_button.isEnabled()
        win.cancel()
    assert blocker.args == ["cancelled"] and win.run_button.isEnabled() and "cancelled" in win.status.text()


def _brightness(analysis, query="cls"):
    g = analysis.grid
    x = analysis.model_input.mean(axis=0)
    return x.reshape(g.rows, g.cell_h, g.cols, g.cell_w).mean(axis=(1, 3))


def test_sanity_flags_a_map_that_ignores_the_model(qtbot, win, analysis):
    from vitviz.core.methods import Method, register_method, unregister_method

    register_method(Method("patch_brightness", "Patch brightness", {"vit": f"{__name__}:_brightness"}))
    try:
        shown(qtbot, win, analysis, ("patch_brightness", "relevance"))
        win.steps_spin.setValue(2)
        win.sanity_box.setChecked(True)
        with qtbot.waitSignal(win.curvesShown, timeout=180000):
            win.run_curves()
    finally:
        unregister_method("patch_brightness")
    rows = {win.table.item(r, 0).text(): r for r in range(win.table.rowCount())}
    assert win.table.item(rows["Patch brightness"], 4).text() == "flagged"
    assert win.table.item(rows["Relevance"], 4).text() == "ok"
    assert "sanity" in win.plots["patch_brightness"].titleLabel.text
    assert "sanity" not in win.plots["relevance"].titleLabel.text


def test_a_new_analysis_supersedes_and_open_reuses_the_window(qtbot, analysis):
    from PySide6 import QtWidgets

    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    other = vitviz.analyze(_scene(1), model="demo_vit")
    w = open_compare_window(parent, analysis)
    with qtbot.waitSignal(w.mapsShown, timeout=60000):
        w.set_analysis(other)  # before the first analysis' maps arrive
    assert np.allclose(w.overlays["rollout"].image, other.rollout())
    assert open_compare_window(parent) is w and w.analysis is other
    w._pool.waitForDone(30000)
