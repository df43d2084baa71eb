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
    assert set(rows) == {"Rollout", "Relevance", "random (seed 0)"}
    assert win.table.item(rows["Relevance"], 1).text() == f"{analysis.faithfulness('relevance', steps=6).deletion_auc:.3f}"
    p = analysis.perturbation("relevance")
    assert win.table.item(rows["Relevance"], 3).text() == f"{p.positive_auc:.3f}"
    assert win.table.item(rows["Relevance"], 4).text() == f"{p.negative_auc:.3f}"
    assert np.allclose(win.perturbations["rollout"].positive, analysis.perturbation("rollout").positive, atol=1e-6)
    assert len(win.insertion_plot.getPlotItem().legend.items) == 3
    assert all(not win.table.item(r, 0).icon().isNull() for r in range(3))  # swatches: the table is a legend
    assert max(seen) == 1000 and seen == sorted(seen)
    out = tmp_path / "cmp.png"
    win.export_png(out)
    img = QtGui.QImage(str(out))
    maps, curves = win.maps_view.grab(), win.curves_box.grab()
    assert img.height() >= maps.height() + curves.height() and img.width() >= maps.width()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    assert arr.std() > 10  # drawn, not blank
    assert img.width() == 2 * max(maps.width(), curves.width())  # drawn at twice the size, for slides
    import json

    win.export_json(tmp_path / "cmp.json")
    ev = json.loads((tmp_path / "cmp.json").read_text())
    assert ev["target"] == int(np.argmax(analysis.logits)) and ev["steps"] == 6
    assert [c["key"] for c in ev["columns"]] == ["rollout", "relevance"]
    assert ev["faithfulness"]["relevance"]["deletion"] == pytest.approx(win.curves["relevance"].deletion.tolist())
    assert ev["perturbation"]["random"]["negative_auc"] == pytest.approx(win.perturbations["random"].negative_auc)


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
        # the cascade as a curve: step 0 the trained model (rho 1), then rho after each unit, as the core says
        ref = {m: analysis.sanity(m) for m in ("patch_brightness", "relevance")}
    finally:
        unregister_method("patch_brightness")
    rows = {win.table.item(r, 0).text(): r for r in range(win.table.rowCount())}
    assert win.table.item(rows["Patch brightness"], 6).text() == "flagged"
    assert win.table.item(rows["Relevance"], 6).text() == "ok"
    assert win.table.item(rows["Relevance"], 5).text() == f"{ref['relevance'].correlations[-1]:.2f}"
    assert "sanity" in win.plots["patch_brightness"].titleLabel.text
    assert "sanity" not in win.plots["relevance"].titleLabel.text
    lines = win.curves_box.sanity_lines
    assert len(win.sanity_plot.getPlotItem().listDataItems()) == 2 and set(lines) == set(ref)
    for m, line in lines.items():
        x, y = line.getData()
        assert np.array_equal(x, np.arange(7)) and y[0] == 1.0
        assert np.allclose(y[1:], np.nan_to_num(ref[m].correlations), atol=1e-9)
    ticks = win.sanity_plot.getAxis("bottom")._tickLevels[0]
    labels = dict(ticks)
    assert labels[0] == "none" and set(labels.values()) <= {"none", "head", "b3", "b2", "b1", "b0", "emb"}


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


def test_each_column_has_its_own_parameters(qtbot, win, analysis):
    """The form of the current column is built from the method's Params (and a ViT's layer / head);
    editing it recomputes that column only, titles it with its values; a method can have two columns."""
    shown(qtbot, win, analysis, ("attention", "rollout"))
    computed = []
    win._signals.map.connect(lambda rid, key, v: computed.append(key))
    win.columns.method_list.setCurrentRow(win.columns.row_of("rollout"))
    form = win.columns.form
    assert {w.name for w in form._container} == {"head_fusion", "discard_ratio"}
    assert win.columns.params_box.title() == "Parameters: Rollout"
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        form.widget("discard_ratio").value = 0.9  # as typed: magicgui's changed -> MethodForm.changed
    assert computed == ["rollout discard_ratio=0.9"]  # the attention map came from the window's cache
    assert np.allclose(win.overlays["rollout discard_ratio=0.9"].image, analysis.rollout(discard_ratio=0.9))
    assert "discard_ratio=0.9" in win.plots["rollout discard_ratio=0.9"].titleLabel.text
    assert win.columns.method_list.currentItem().text() == "Rollout (discard_ratio 0.9)"
    # a second rollout column, back to no discarding: both side by side
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.columns.duplicate()
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.set_column_params("rollout", {"discard_ratio": 0.0}, nth=1)
    assert list(win.plots) == ["attention layer=-1 head=mean", "rollout discard_ratio=0.9", "rollout"]
    assert np.allclose(win.overlays["rollout"].image, analysis.rollout())
    # raw attention: layer and head are the column's own
    win.columns.method_list.setCurrentRow(win.columns.row_of("attention"))
    assert {w.name for w in form._container} == {"layer", "head"}
    assert form.widget("layer").min == -analysis.num_layers and form.widget("layer").max == analysis.num_layers - 1
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        form.widget("head").value = "2"
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        form.widget("layer").value = 1
    key = "attention layer=1 head=2"
    assert np.allclose(win.overlays[key].image, analysis.explain("attention", layer=1, head=2))
    assert "layer=1, head=2" in win.plots[key].titleLabel.text
    # a click on a map makes its column current
    qtbot.wait(50)
    plot = win.plots["rollout discard_ratio=0.9"]
    pos = win.maps_view.mapFromScene(plot.vb.sceneBoundingRect().center())
    qtbot.mouseClick(win.maps_view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    assert win.columns.method_list.currentItem().text() == "Rollout (discard_ratio 0.9)"
    assert form.widget("discard_ratio").value == pytest.approx(0.9)
    assert win.selected is not None
    # the curves use each column's values
    win.steps_spin.setValue(4)
    with qtbot.waitSignal(win.curvesShown, timeout=120000):
        win.run_curves()
    assert list(win.curves) == [key, "rollout discard_ratio=0.9", "rollout", "random"]
    for k, kw in ((key, {"layer": 1, "head": 2}), ("rollout discard_ratio=0.9", {"discard_ratio": 0.9})):
        method = k.split()[0]
        assert np.allclose(win.curves[k].deletion, analysis.faithfulness(method, steps=4, **kw).deletion, atol=1e-6)
    assert win.curves["rollout discard_ratio=0.9"].deletion_auc != pytest.approx(win.curves["rollout"].deletion_auc)
    # the columns and their values carry over to the next analysis
    other = vitviz.analyze(_scene(2), model="demo_vit")
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.set_analysis(other)
    assert list(win.plots) == [key, "rollout discard_ratio=0.9", "rollout"]
    assert np.allclose(win.overlays["rollout discard_ratio=0.9"].image, other.rollout(discard_ratio=0.9))
    win.set_analysis(None)  # a result the window cannot compare (DETR) in between: the columns stay
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.set_analysis(other)
    assert list(win.plots) == [key, "rollout discard_ratio=0.9", "rollout"]
    win.columns.method_list.setCurrentRow(win.columns.row_of("rollout", 1))
    win.columns.remove()
    assert win.columns.chosen_methods() == ["attention", "rollout"]


def test_integrated_gradients_steps_are_its_own_not_the_curves(qtbot, win, analysis):
    pytest.importorskip("captum")
    shown(qtbot, win, analysis, ("integrated_gradients",))
    with qtbot.waitSignal(win.mapsShown, timeout=60000):
        win.set_column_params("integrated_gradients", {"steps": 8})
    key = "integrated_gradients steps=8"
    assert "steps=8" in win.plots[key].titleLabel.text
    win.steps_spin.setValue(3)
    with qtbot.waitSignal(win.curvesShown, timeout=120000) as blocker:
        win.run_curves()
    assert blocker.args == [""]
    f = analysis.faithfulness("integrated_gradients", steps=3, method_params={"steps": 8})
    assert len(win.curves[key].deletion) == 4 and np.allclose(win.curves[key].deletion, f.deletion, atol=1e-6)
