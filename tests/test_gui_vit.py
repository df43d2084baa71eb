"""The ViT workspace as a user drives it: click patches, tiles, keys; bad input; no stale results."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from vitviz.gui.colormaps import map_values

from .gui_helpers import make_window, open_and_wait, pixel_at
from tests.helpers import random_png

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    return random_png(tmp_path / "img.png", (90, 120, 3), seed=3)


def test_click_patch_renders_its_attention_through_the_colormap(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    win.display.opacity_slider.setValue(100)
    win.display.grid_check.setChecked(False)
    view = panel.main_view
    x0, y0, x1, y1 = a.grid.rect(1, 2)
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=view.view_to_widget((x0 + x1) / 2, (y0 + y1) / 2))
    assert panel.query == (1, 2)
    expected = a.attention_map(panel.layer, panel.head, (1, 2))
    lo, hi = view.levels
    assert (lo, hi) == (expected.min(), expected.max())
    checked = 0
    for r in range(a.grid.rows):
        for c in range(a.grid.cols):
            if (r, c) == (1, 2):
                continue  # the selection outline is drawn there
            rx0, ry0, rx1, ry1 = a.grid.rect(r, c)
            got = pixel_at(view, (rx0 + rx1) / 2, (ry0 + ry1) / 2)
            want = map_values(win.display.colormap, expected[r, c], lo, hi)[:3]
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 2, (r, c, got, want)
            checked += 1
    assert checked == a.grid.rows * a.grid.cols - 1


def test_click_outside_or_cropped_selects_nothing(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    panel.select_query((2, 2))
    vx0 = a.grid.transform.visible_rect()[0]
    assert vx0 > 2  # the wide test image loses its sides to the center crop
    panel._on_image_click(vx0 / 2, 45)
    assert panel.query == (2, 2)
    assert "cropped away" in win.statusBar().currentMessage()
    panel._on_image_click(-10, 45)
    assert "outside the image" in win.statusBar().currentMessage()


def test_tile_click_selects_layer_and_head(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    grid = panel.grid_view
    qtbot.mouseClick(grid.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=grid.tile_center(1, 3))
    assert (panel.layer, panel.head) == (1, 3)
    assert panel.layer_spin.value() == 1 and panel.head_combo.currentData() == 3


def test_keyboard_moves_query_and_layer(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    panel.select_query((1, 1))
    panel.main_view.setFocus()
    qtbot.keyClick(panel.main_view, QtCore.Qt.Key.Key_Right)
    qtbot.keyClick(panel.main_view, QtCore.Qt.Key.Key_Down)
    assert panel.query == (2, 2)
    qtbot.keyClick(panel.main_view, QtCore.Qt.Key.Key_C)
    assert panel.query == "cls"
    layer = panel.layer
    qtbot.keyClick(panel.main_view, QtCore.Qt.Key.Key_PageUp)
    assert panel.layer == layer - 1


def test_bad_image_keeps_what_was_open(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert not win.open_path(str(bad))
    assert win.analysis is a and win.image_path == str(image_file)
    assert "broken.png" in win.last_error


def test_superseded_results_are_dropped(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    shown = []
    win.analysisShown.connect(shown.append)
    first = Image.new("RGB", (64, 64), "red")
    second = Image.new("RGB", (80, 64), "blue")
    win.image = first
    win.run()
    win.image = second
    last = win.run()
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=30000)
    qtbot.wait(300)
    assert len(shown) == 1 and shown[0].image.size == (80, 64)
    assert win.runner.latest_id() == last


def test_many_signal_emits_do_not_crash(qtbot):
    """PySide6 6.12.0 on CPython 3.11 crashed after a few hundred emits (bool_dealloc)."""
    class Emitter(QtCore.QObject):
        sig = QtCore.Signal(bool, str)

    e = Emitter()
    got = []
    e.sig.connect(lambda b, s: got.append(b))
    for i in range(5000):
        e.sig.emit(i % 2 == 0, "x")
    assert len(got) == 5000


def test_window_close_leaves_no_threads(qtbot, tmp_path, image_file):
    from PySide6 import QtWidgets

    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    thread = win.runner._thread
    win.close()
    assert thread.isFinished()
    win.deleteLater()
    qtbot.wait(50)
    assert not [w for w in QtWidgets.QApplication.topLevelWidgets() if w.isVisible()]


def test_hover_reports_patch_and_model_view_sits_on_the_crop(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    x0, y0, x1, y1 = a.grid.rect(2, 1)
    with qtbot.waitSignal(panel.statusMessage, timeout=2000) as msg:
        panel.main_view.hovered.emit((x0 + x1) / 2, (y0 + y1) / 2)
    assert "patch (row 2, col 1)" in msg.args[0]
    qtbot.keyClick(panel.main_view, QtCore.Qt.Key.Key_M)
    assert panel.model_view_check.isChecked()
    rect = panel.main_view.base.mapRectToView(panel.main_view.base.boundingRect())
    ex = a.grid.extent()
    assert np.allclose([rect.left(), rect.top(), rect.right(), rect.bottom()], ex, atol=1e-6)
    assert panel.main_view.base.image.shape[:2] == a.model_input.shape[1:]


def test_bad_checkpoint_restores_model_and_weights(qtbot, tmp_path, image_file):
    import torch

    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    bad = tmp_path / "wrong.pth"
    torch.save({"model": {"not.a.vit.weight": torch.zeros(3)}}, bad)
    with qtbot.waitSignal(win.runner.errorRaised, timeout=60000):
        win.set_model("test_tiny_vit", str(bad))
    assert "wrong.pth" in win.last_error and "not.a.vit.weight" in win.last_error
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    assert win.weights_combo.currentData() == "random"
    with qtbot.waitSignal(win.analysisShown, timeout=60000):  # the next image runs on what works
        win.open_path(str(image_file))


def test_paste_and_drop_open_images(qtbot, tmp_path, image_file):
    from PySide6 import QtGui, QtWidgets

    win = make_window(qtbot, tmp_path)
    QtWidgets.QApplication.clipboard().setImage(QtGui.QImage(str(image_file)))
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as shown:
        win.paste_image()
    assert shown.args[0].image.size == (120, 90) and win.image_name == "pasted image"
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(image_file))])
    drop = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.DropAction.CopyAction, mime,
                            QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(win.analysisShown, timeout=60000):
        win.dropEvent(drop)
    assert win.image_path == str(image_file)


def test_export_names_the_image_the_map_was_computed_from(qtbot, tmp_path, image_file, monkeypatch):
    """While a new image is still running, the figure on screen (and its export) is the old one's."""
    from vitviz.gui.export_dialog import _current

    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(other)
    monkeypatch.setattr(win.runner, "submit", lambda *a, **k: 0)  # the new run has not finished
    assert win.open_path(str(other)) and win.image_name == "other.png"
    _, ctx = _current(win)
    assert ctx.image_name == "img.png" and ctx.image_path == str(image_file)
    assert ctx.image_size == (120, 90)
