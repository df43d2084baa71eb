"""The analyses window from the main window: View > Analyses (Ctrl+Shift+A) shows the result on
screen; clicking a head's dot shows that layer and head in the main view."""
import numpy as np
import pytest
from PIL import Image

from . import swin_helpers  # noqa: F401  (registers test_tiny_swin)
from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(path)
    return path


def _analyses_action(win):
    return next(a for a in win.actions() if a.shortcut().toString() == "Ctrl+Shift+A")


def test_analyses_window_follows_the_result_and_selects_a_head(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    _analyses_action(win).trigger()
    from vitviz.gui.analyses_window import AnalysesWindow

    aw = win.findChild(AnalysesWindow)
    assert aw is not None and aw.isVisible() and aw.analysis is a
    aw.select.emit(1, 2)  # a click on the dot of layer 1, head 2
    panel = win.panels["vit"]
    assert (panel.state.layer, panel.state.head) == (1, 2)
    b = open_and_wait(qtbot, win, image_file)  # a new result: the window follows it
    assert aw.analysis is b
    _analyses_action(win).trigger()  # again: the same window, raised
    assert win.findChildren(AnalysesWindow) == [aw]


def test_swin_dot_selects_stage_block_and_head(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_swin")
    a = open_and_wait(qtbot, win, image_file)
    aw = win.show_analyses()
    last = len(a.blocks) - 1
    aw.select.emit(last, 1)
    s = win.panels["swin"].state
    assert (s.stage, s.block, s.head) == (a.blocks[last].stage, a.blocks[last].block, 1)


def test_w_opens_the_walk_through_for_the_attention_on_screen(qtbot, tmp_path, image_file):
    from vitviz.gui.walkthrough_window import WalkthroughWindow

    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    w = next(a for a in win.actions() if a.shortcut().toString() == "W")
    w.trigger()
    found = win.findChildren(WalkthroughWindow)
    assert len(found) == 1 and found[0].isVisible()
    w.trigger()  # again: raised, not a second window
    assert win.findChildren(WalkthroughWindow) == found


def test_compare_window_opens_on_the_result_and_follows_the_next(qtbot, tmp_path, image_file):
    from vitviz.gui.compare_window import CompareWindow

    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    next(x for x in win.actions() if x.shortcut().toString() == "Ctrl+Shift+M").trigger()
    cw = win.findChild(CompareWindow)
    assert cw is not None and cw.isVisible() and cw.analysis is a
    b = open_and_wait(qtbot, win, image_file)
    assert cw.analysis is b
