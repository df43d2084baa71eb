"""Stepping through many images: folders open as the list, broken files are reported once and
skipped, the window says where in the list it is."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from .gui_helpers import make_window

pytestmark = pytest.mark.gui


def _png(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    a, c = _png(folder / "a.png", 1), _png(folder / "c.png", 2)
    b = folder / "b.png"
    b.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder, [a, str(b), c]


def _shown(qtbot, win, action):
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        action()
    return got.args[0]


def test_broken_file_is_reported_once_then_skipped(qtbot, tmp_path, files, monkeypatch):
    _, (a, b, c) = files
    win = make_window(qtbot, tmp_path)
    dialogs = []
    monkeypatch.setattr(win, "_error_dialog", lambda title, text: dialogs.append(text))
    _shown(qtbot, win, lambda: win.set_image_list([a, b, c]))
    assert win.image_path == a and "(1/3)" in win.windowTitle()
    _shown(qtbot, win, lambda: qtbot.keyClick(win, QtCore.Qt.Key.Key_Right, QtCore.Qt.KeyboardModifier.AltModifier))
    assert win.image_path == c and len(dialogs) == 1 and "b.png" in dialogs[0]
    assert "Skipped b.png" in win.statusBar().currentMessage()
    _shown(qtbot, win, lambda: win.step_image(1))  # wraps to a.png, past b.png without asking again
    assert win.image_path == a and len(dialogs) == 1
    _shown(qtbot, win, lambda: win.step_image(-1))
    assert win.image_path == c and len(dialogs) == 1 and "(3/3)" in win.windowTitle()
    entries = {act.text(): act for act in win.images_menu.actions()}
    assert not entries["b.png — could not be opened"].isEnabled() and entries["c.png"].isChecked()


def test_a_folder_opens_as_the_image_list(qtbot, tmp_path, files):
    folder, (a, b, c) = files
    win = make_window(qtbot, tmp_path)
    win._error_dialog = lambda title, text: None
    _shown(qtbot, win, lambda: win.set_image_list([str(folder)]))
    assert win.images.paths == [a, b, c] and win.image_path == a
    win.images.set([])
    _shown(qtbot, win, lambda: win.open_path(str(folder)))  # a folder given where a file is expected
    assert win.images.paths == [a, b, c] and win.image_path == a


def test_a_folder_without_images_says_so_and_keeps_what_was_open(qtbot, tmp_path, files):
    _, (a, _, _) = files
    win = make_window(qtbot, tmp_path)
    _shown(qtbot, win, lambda: win.open_path(a))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not win.set_image_list([str(empty)])
    assert "no image file" in win.last_error and win.image_path == a and win.image is not None


def test_shortcuts_window_lists_every_bound_key_grouped_by_family(qtbot, tmp_path):
    from PySide6 import QtGui

    from vitviz.gui.shortcuts import KEYS, key_text

    win = make_window(qtbot, tmp_path)
    # Offscreen windows are never active, so key events do not reach window shortcuts: trigger F1's action.
    help_action = next(a for a in win.actions() if a.shortcut().toString() == "F1")
    help_action.trigger()
    qtbot.waitUntil(lambda: win.shortcuts_dialog is not None and win.shortcuts_dialog.isVisible())
    dialog = win.shortcuts_dialog
    rows = dialog.rows()
    shown_keys = {key for _, key, _ in rows}
    bound = [a.shortcut().toString(QtGui.QKeySequence.SequenceFormat.NativeText)
             for a in win.actions() if not a.shortcut().isEmpty()]
    assert len(bound) >= 15 and set(bound) <= shown_keys  # every key the window binds is listed
    named = [k for k in KEYS if k.name]
    assert len(bound) == len(named) and sorted(bound) == sorted(key_text(k.keys) for k in named)
    assert ("DETR", "Shift+click", "Probe the encoder at that point") in rows
    assert {g for g, _, _ in rows} >= {"ViT", "Swin", "DETR", "Images", "View", "Export"}
