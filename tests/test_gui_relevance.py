"""Class-specific maps in the ViT panel: the backward pass runs in the worker thread, the previous
map stays while it runs, a class clicked in the top-5 list becomes the target, stale maps are dropped."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui


def choose(panel, method, **params):
    from vitviz.core.methods import get_method

    m = get_method(method)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))
    if params:
        panel.update_state(method_params=m.resolve({**dict(panel.state.method_params), **params}))


def wait_ready(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.method_busy, timeout=30000)


def shown_levels(panel):
    return panel.method_view.levels


def test_relevance_computes_in_the_worker_and_keeps_the_previous_map(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    assert panel.method_combo.findData("relevance") >= 0 and panel.method_combo.findData("grad_rollout") >= 0
    choose(panel, "relevance")
    assert panel.method_busy  # asked the worker; the GUI thread did not run the backward
    assert "computing" in panel.method_view.title_text()
    wait_ready(qtbot, panel)
    top = int(np.argmax(a.logits))
    expected = a.explain("relevance")
    assert shown_levels(panel) == (expected.min(), expected.max())
    np.testing.assert_allclose(panel.current_method_map(), expected)

    other = int(np.argsort(a.logits)[-2])
    before = shown_levels(panel)
    panel.update_state(method_params=(("contrast", -1), ("start_layer", 0), ("target", other)))
    assert panel.method_busy
    assert shown_levels(panel) == before  # the previous map is still drawn while the worker runs
    wait_ready(qtbot, panel)
    expected = a.explain("relevance", target=other)
    assert shown_levels(panel) == (expected.min(), expected.max())
    assert other != top


def test_superseded_targets_are_dropped(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    choose(panel, "grad_rollout")
    got = []
    win.runner.explainReady.connect(lambda req, values: got.append(dict(req.kwargs)["target"]))
    for t in (0, 1, 2, 3):
        panel.update_state(method_params=(("contrast", -1), ("discard_ratio", 0.5), ("target", t)))
    wait_ready(qtbot, panel)
    qtbot.wait(50)
    assert got == [3]  # only the latest request is delivered
    np.testing.assert_allclose(panel.current_method_map(), a.explain("grad_rollout", target=3, discard_ratio=0.5))


def test_clicking_a_class_in_the_top5_sets_the_target(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    assert panel.state.method == "rollout"
    second = a.top_predictions(5)[1]
    item = panel.predictions.item(1)
    rect = panel.predictions.visualItemRect(item)
    qtbot.mouseClick(panel.predictions.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.state.method == "relevance"  # a class-agnostic method gives way to relevance
    assert dict(panel.state.method_params)["target"] == second.index
    assert panel.method_form.widget("target").value == second.index
    wait_ready(qtbot, panel)
    np.testing.assert_allclose(panel.current_method_map(), a.explain("relevance", target=second.index))
    # the export names the class
    src = panel.export_sources({"view": "method"})
    assert second.label in src.views["method"].title


def test_panel_without_a_runner_computes_on_the_spot(qtbot, rgb_image):
    """A panel outside the main window (scripts, tests) has no worker: the map is computed at once."""
    import vitviz
    from vitviz.gui.views.controls import DisplayControls
    from vitviz.gui.views.vit_panel import ViTPanel

    a = vitviz.analyze(rgb_image, model="test_tiny_vit", weights="random")
    display = DisplayControls()
    panel = ViTPanel(display)
    qtbot.addWidget(panel)
    panel.set_analysis(a)
    choose(panel, "relevance", target=4)
    assert not panel.method_busy
    np.testing.assert_allclose(panel.current_method_map(), a.explain("relevance", target=4))
    panel.update_state(method_params=(("contrast", -1), ("start_layer", 0), ("target", 99)))
    assert "not a class" in panel.method_view.title_text()
