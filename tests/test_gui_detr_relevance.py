"""DETR relevance in the app: the selected box's "why" map, computed in the worker, equal to the API's,
exported as shown."""
import numpy as np
import pytest
from PIL import Image

from .gui_helpers import make_window, open_and_wait
from .test_detr_api import TINY_DETR  # noqa: F401 (registers test_tiny_detr)

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(path)
    return path


def test_selected_box_relevance_is_computed_in_the_worker_and_equals_the_api(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_detr")
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["detr"]
    panel.set_threshold(0.0)  # random weights: every query is a detection
    q = panel.query
    assert q is not None
    panel.object_map_combo.setCurrentIndex(panel.object_map_combo.findData("relevance"))
    assert panel.state.object_map == "relevance"
    qtbot.waitUntil(lambda: "computing" not in panel.det_view.title_text(), timeout=60000)
    want = a.explain("relevance", target=q)
    shown = panel.query_map()
    np.testing.assert_allclose(shown, want, equal_nan=True)
    assert "Relevance · why" in panel.det_view.title_text()
    lo, hi = panel.det_view.levels
    assert np.isclose(lo, np.nanmin(want)) and np.isclose(hi, np.nanmax(want))
    # another box: its own map (the model's reasons differ per detection)
    other = next(d.query for d in panel.detections if d.query != q)
    panel.select_query(other)
    qtbot.waitUntil(lambda: "computing" not in panel.det_view.title_text(), timeout=60000)
    assert not np.allclose(np.nan_to_num(panel.query_map()), np.nan_to_num(want))
    # exported as shown, and the sidecar records it
    sources = panel.export_sources()
    det = sources.views["detections"]
    np.testing.assert_allclose(det.values, a.explain("relevance", target=other), equal_nan=True)
    assert det.value_label == "relevance" and sources.settings["object_map"] == "relevance"
