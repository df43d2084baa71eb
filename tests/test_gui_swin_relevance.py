"""Class-specific maps in the Swin panel: relevance for the top-1 class by default in the method view
below the window attention, computed in the worker thread (the previous map stays while it runs),
a class clicked in the top-5 list becomes the target, superseded requests are dropped, and the
export holds the map shown. Uses the tiny real torchvision Swin of swin_helpers (7 classes)."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from . import swin_helpers  # noqa: F401  (registers test_tiny_swin)
from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui


def _swin(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_swin")
    a = open_and_wait(qtbot, win, image_file)
    return win, win.panels["swin"], a


def wait_ready(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.method_busy, timeout=60000)


def set_target(panel, target, **more):
    from vitviz.core.methods import get_method

    params = {**dict(panel.state.method_params), "target": target, **more}
    panel.update_state(method_params=get_method(panel.state.method).resolve(params))


def levels_of(values):
    return float(np.nanmin(values)), float(np.nanmax(values))


def assert_drawn(panel, expected):
    """The method view's overlay is exactly `expected` coloured (its own min..max) over stage 0."""
    from vitviz.core.colormaps import overlay_rgba

    s, a = panel.state, panel.analysis
    lo, hi = levels_of(expected)
    np.testing.assert_array_equal(panel.method_view.overlay.image,
                                  overlay_rgba(expected, s.colormap, lo, hi, s.opacity, s.overlay))
    r = panel.method_view.overlay.mapRectToParent(panel.method_view.overlay.boundingRect())
    x0, y0, x1, y1 = a.stage_grid(0).extent()
    assert (r.left(), r.top(), r.right(), r.bottom()) == pytest.approx((x0, y0, x1, y1))


def test_default_is_relevance_for_the_top_class_computed_in_the_worker(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    assert panel.state.method == "relevance"
    for name in ("attention", "relevance", "grad_cam", "integrated_gradients"):
        assert panel.method_combo.findData(name) >= 0
    assert panel.method_combo.findData("rollout") < 0  # a ViT method: not offered for Swin
    assert [p.name for p in panel.method_form.method.params] == ["target", "contrast", "start_layer"]
    wait_ready(qtbot, panel)
    assert panel._grad_maps.requests >= 1  # the worker computed it, not the GUI thread
    expected = a.explain("relevance")
    np.testing.assert_array_equal(panel.current_method_map(), expected)
    assert panel.method_view.levels == levels_of(expected)
    assert_drawn(panel, expected)
    top = a.top_predictions(1)[0]
    title = panel.method_view.title_text()
    assert title.startswith("Relevance") and f"target: {a.target_info(top.index).label}" in title
    # the map is drawn on the stage-0 grid, whatever stage the attention view shows
    assert panel.state.stage == 1
    assert panel.method_view.overlay.image.shape[:2] == a.stage_grid(0).shape


def test_another_target_recomputes_keeping_the_previous_map_meanwhile(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    wait_ready(qtbot, panel)
    before = panel.method_view.levels
    second = int(np.argsort(a.logits)[-2])
    set_target(panel, second)
    assert panel.method_busy
    assert panel.method_view.levels == before  # the previous map is still drawn while the worker runs
    assert_drawn(panel, a.explain("relevance"))
    assert "computing… (the previous map meanwhile)" in panel.method_view.title_text()
    wait_ready(qtbot, panel)
    expected = a.explain("relevance", target=second)
    np.testing.assert_array_equal(panel.current_method_map(), expected)
    assert panel.method_view.levels == levels_of(expected) != before
    assert_drawn(panel, expected)
    assert "computing" not in panel.method_view.title_text()
    # selecting another token or block does not touch the pooled prediction's map: no new request
    n = panel._grad_maps.requests
    panel._select(stage=0, block=1)
    panel.select_token(3, 4)
    assert not panel.method_busy and panel._grad_maps.requests == n
    np.testing.assert_array_equal(panel.current_method_map(), expected)


def test_clicking_a_class_in_the_top5_sets_the_target(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    wait_ready(qtbot, panel)
    third = a.top_predictions(5)[2]
    item = panel.predictions.item(2)
    rect = panel.predictions.visualItemRect(item)
    qtbot.mouseClick(panel.predictions.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.state.params["target"] == third.index
    assert panel.method_form.widget("target").value == third.index
    assert panel.method_busy  # recomputing for the clicked class
    wait_ready(qtbot, panel)
    np.testing.assert_array_equal(panel.current_method_map(), a.explain("relevance", target=third.index))
    assert_drawn(panel, a.explain("relevance", target=third.index))
    assert f"target: {a.target_info(third.index).label}" in panel.method_view.title_text()
    # raw attention in the method view gives way to relevance when a class is clicked
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("attention"))
    assert panel.state.method == "attention"
    np.testing.assert_array_equal(panel.current_method_map(), panel.current_map())
    first = a.top_predictions(5)[0]
    rect = panel.predictions.visualItemRect(panel.predictions.item(0))
    qtbot.mouseClick(panel.predictions.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.state.method == "relevance" and panel.state.params["target"] == first.index
    wait_ready(qtbot, panel)
    np.testing.assert_array_equal(panel.current_method_map(), a.explain("relevance", target=first.index))


def test_superseded_targets_are_dropped(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    wait_ready(qtbot, panel)
    got = []
    win.runner.explainReady.connect(lambda req, values: got.append(dict(req.kwargs)["target"]))
    for t in (0, 1, 2, 3):
        set_target(panel, t, start_layer=1)
    wait_ready(qtbot, panel)
    qtbot.wait(100)
    assert got == [3]  # only the latest request is delivered
    expected = a.explain("relevance", target=3, start_layer=1)
    np.testing.assert_array_equal(panel.current_method_map(), expected)
    assert panel.method_view.levels == levels_of(expected)


def test_a_bad_target_keeps_the_map_and_says_why(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    wait_ready(qtbot, panel)
    before = panel.method_view.levels
    panel.update_state(method_params=(("contrast", 2), ("start_layer", 0), ("target", 2)))
    wait_ready(qtbot, panel)
    assert "contrast 2 is the target itself" in panel.method_view.title_text()
    assert panel.method_view.levels == before


def test_export_holds_the_map_shown_with_the_target_named(qtbot, tmp_path, image_file):
    win, panel, a = _swin(qtbot, tmp_path, image_file)
    k = int(np.argsort(a.logits)[-3])
    set_target(panel, k)
    wait_ready(qtbot, panel)
    src = panel.export_sources({"view": "method"})
    v = src.views["method"]
    np.testing.assert_array_equal(v.values, panel.current_method_map())
    np.testing.assert_array_equal(v.values, a.explain("relevance", target=k))
    assert v.title == panel.method_view.title_text()
    assert v.meta["target_info"]["index"] == k and src.settings["method_params"]["target"] == k
    panel.method_view.setFocus()
    assert panel.focused_view() == "method"
    # written to a file as the export dialog does: the sidecar names the target and the map's range
    import json

    from vitviz.gui.export import ExportContext, ExportRequest, export_sources_to_file

    ctx = ExportContext.from_analysis(a, image_path=str(image_file), weights="random", image_name="img.png")
    res = export_sources_to_file(src, ExportRequest(views=["method"], width=400), ctx, tmp_path / "m.png")
    side = json.loads((tmp_path / "m.png.json").read_text())
    assert res.path.endswith("m.png") and (tmp_path / "m.png").stat().st_size > 1000
    (p,) = side["panels"]
    assert p["name"] == "method" and p["method"] == "relevance" and p["target_info"]["index"] == k
    assert p["levels"] == pytest.approx(list(levels_of(a.explain("relevance", target=k))))
    assert f"target: {a.target_info(k).label}" in p["title"]


def test_panel_without_a_runner_computes_on_the_spot(qtbot, rgb_image):
    """A panel outside the main window (scripts, tests) has no worker: the map is computed at once."""
    import vitviz
    from vitviz.gui.views.controls import DisplayControls
    from vitviz.gui.views.swin_panel import SwinPanel

    a = vitviz.analyze(rgb_image, model="test_tiny_swin", weights="random")
    panel = SwinPanel(DisplayControls())
    qtbot.addWidget(panel)
    panel.set_analysis(a)
    assert not panel.method_busy
    np.testing.assert_array_equal(panel.current_method_map(), a.explain("relevance"))
    set_target(panel, 9)
    assert "not a class" in panel.method_view.title_text()
