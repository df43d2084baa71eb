"""The attention walk-through as a user drives it: click a patch, open the walk-through, its
highlighted keys are the largest weights of the map the main view shows; it follows the panel;
the figure exports as vector PDF / SVG."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from vitviz.gui.walkthrough_window import WalkthroughWindow, open_walkthrough

from . import swin_helpers  # noqa: F401 (registers test_tiny_swin)
from .gui_helpers import make_window, open_and_wait
from tests.helpers import random_png

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    return random_png(tmp_path / "img.png", (90, 120, 3), seed=3)


def click(qtbot, view, rect):
    x0, y0, x1, y1 = rect
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=view.view_to_widget((x0 + x1) / 2, (y0 + y1) / 2))


def open_and_wait_walkthrough(qtbot, win) -> WalkthroughWindow:
    with qtbot.waitSignal(_walkthrough_signal(win), timeout=30000):
        wt = open_walkthrough(win)
    return wt


def _walkthrough_signal(win):
    wt = win.findChild(WalkthroughWindow) or WalkthroughWindow(win)
    return wt.updated


def assert_top_k_of(map_: np.ndarray, keys, k: int):
    """`keys` are k positions whose map values are the k largest (ties within float16 resolution)."""
    assert len(keys) == k == len(set(keys))
    values = np.where(np.isfinite(map_), map_, -np.inf)
    chosen = np.array([values[r, c] for r, c in keys])
    others = np.delete(values.ravel(), [r * map_.shape[1] + c for r, c in keys])
    tol = 1e-3 * float(np.nanmax(map_))  # the main view's map is float16
    assert chosen.min() >= others.max() - tol
    assert np.all(np.diff(chosen) <= tol)  # largest first


def test_vit_walkthrough_highlights_the_largest_weights_of_the_main_map(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    panel.update_state(layer=1, head=2)
    view = panel.main_view
    click(qtbot, view, a.grid.rect(1, 2))
    assert panel.query == (1, 2)
    wt = open_and_wait_walkthrough(qtbot, win)
    expected = a.attention_map(1, 2, (1, 2))  # what the main view draws (test_gui_vit checks its pixels)
    assert view.levels == (expected.min(), expected.max())
    assert_top_k_of(expected, wt.highlighted_keys(), 5)
    s = wt.walkthrough.steps
    assert s.where == "layer 1, head 2" and s.query_position == (1, 2)
    np.testing.assert_allclose(s.grid_map(s.weights), expected, atol=1e-3)

    # k is adjustable; the walk-through follows the next click without being reopened
    wt.k_spin.setValue(3)
    assert_top_k_of(expected, wt.highlighted_keys(), 3)
    with qtbot.waitSignal(wt.updated, timeout=30000):
        click(qtbot, view, a.grid.rect(3, 0))
    assert wt.walkthrough.steps.query_position == (3, 0)
    assert_top_k_of(a.attention_map(1, 2, (3, 0)), wt.highlighted_keys(), 3)
    with qtbot.waitSignal(wt.updated, timeout=30000):
        panel.update_state(head="mean")
    assert "head 0 shown" in wt.walkthrough.title and wt.walkthrough.steps.head == 0

    # vector exports: the figure as text and rectangles, not one bitmap
    wt.export(str(tmp_path / "steps.svg"))
    wt.export(str(tmp_path / "steps.pdf"))
    svg = (tmp_path / "steps.svg").read_text()
    assert svg.count("<rect") + svg.count("<path") > 50 and "Softmax" in svg
    assert (tmp_path / "steps.pdf").read_bytes()[:5] == b"%PDF-"
    img = wt.canvas.grab().toImage()
    assert img.width() > 500 and len({img.pixel(x, 200) for x in range(0, img.width(), 7)}) > 10
    assert open_walkthrough(win) is wt  # one walk-through window per main window
    wt.close()
    assert wt.wait()


def test_swin_walkthrough_follows_the_clicked_token(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_swin")
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["swin"]
    panel._select(stage=0, block=1, head=1)
    grid = a.stage_grid(0)
    click(qtbot, panel.main_view, grid.rect(17, 17))  # a shifted window that wraps: the mask is at work
    assert panel.token == (17, 17)
    wt = open_and_wait_walkthrough(qtbot, win)
    expected = a.attention_map(0, 1, 1, (17, 17))  # NaN outside the token's window
    assert panel.main_view.levels == (np.nanmin(expected), np.nanmax(expected))
    keys = wt.highlighted_keys()
    assert_top_k_of(expected, keys, 5)
    inside = {tuple(t) for t in a.window_tokens(0, 1, 17, 17)}
    assert set(keys) <= inside
    s = wt.walkthrough.steps
    assert (s.mask == -100).any() and s.where == "stage 0 block 1, head 1"
    wt.close()
    assert wt.wait()


@pytest.mark.slow  # builds a ResNet-18 DETR: ~19 s on the shared machine under load
def test_detr_walkthrough_explains_the_selected_objects_cross_attention(qtbot, tmp_path, image_file):
    from .test_detr_api import TINY_DETR  # noqa: F401 (registers test_tiny_detr)

    win = make_window(qtbot, tmp_path, model="test_tiny_detr")
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["detr"]
    panel.update_state(query=None)
    wt = open_and_wait_walkthrough(qtbot, win)
    assert wt.walkthrough is None and "Select a detection" in wt.canvas.message  # nothing to explain yet
    with qtbot.waitSignal(wt.updated, timeout=30000):
        panel.update_state(query=3, layer=1, head=1)
    s = wt.walkthrough.steps
    assert s.where == "decoder layer 1 (cross), head 1" and s.query == 3
    assert_top_k_of(a.cross_attention(1, 1, 3), wt.highlighted_keys(), 5)
    wt.close()
    assert wt.wait()
