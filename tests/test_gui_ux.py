"""What a new user tripped over (issue 22): readouts, status line, views that re-fit, Fit view,
the colorbar's width, extreme images, small windows, overlay modes, the export dialog."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from . import swin_helpers  # noqa: F401  (registers test_tiny_swin)
from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


def _centre(rect):
    x0, y0, x1, y1 = rect
    return (x0 + x1) / 2, (y0 + y1) / 2


def _click(qtbot, view, x, y):
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=view.view_to_widget(x, y))


def test_readout_follows_the_click_and_every_state_change(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    panel.main_view.hovered.emit(*_centre(a.grid.rect(0, 0)))  # the pointer was over (0, 0)...
    x, y = _centre(a.grid.rect(2, 1))
    _click(qtbot, panel.main_view, x, y)  # ...then clicked (2, 1) without moving afterwards
    assert panel.query == (2, 1)
    value = a.attention_map(panel.layer, panel.head, (2, 1), panel.direction)[2, 1]
    msg = win.statusBar().currentMessage()
    assert msg.startswith("patch (row 2, col 1)") and f"attention {value:.4g}" in msg
    panel.step_head(1)  # a key press with the pointer still: the readout describes the new head
    value = a.attention_map(panel.layer, panel.head, (2, 1), panel.direction)[2, 1]
    assert isinstance(panel.head, int) or panel.head != "mean"
    assert f"attention {value:.4g}" in win.statusBar().currentMessage()


def test_swin_readout_of_the_token_just_clicked_is_inside_its_window(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path, model="test_tiny_swin")
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["swin"]
    grid = a.stage_grid(panel.stage)
    panel.main_view.hovered.emit(*_centre(grid.rect(0, 0)))
    rows, cols = grid.shape
    x, y = _centre(grid.rect(rows - 1, cols - 1))  # far from (0, 0): another window
    _click(qtbot, panel.main_view, x, y)
    msg = win.statusBar().currentMessage()
    assert f"token (row {rows - 1}, col {cols - 1})" in msg
    assert "outside the selected token's window" not in msg and "attention" in msg


def test_long_status_messages_elide_and_leave_the_model_label_whole(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    win.resize(700, 500)
    long = "Downloading the weights from https://download.pytorch.org/models/" + "x" * 300 + ".pth failed"
    win.statusBar().showMessage(long, 5000)
    qtbot.wait(50)
    label, info = win.statusBar().message_label, win.info_label
    assert win.statusBar().currentMessage() == long  # the whole text is kept (and is the tooltip)
    assert label.text().endswith("…") and len(label.text()) < len(long) and label.toolTip() == long
    assert info.width() >= info.sizeHint().width()  # the permanent label is not squeezed
    left, right = label.geometry(), info.geometry()
    assert left.right() < right.left()  # side by side, no overlap
