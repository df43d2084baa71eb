"""What a new user tripped over (issue 22): readouts, status line, views that re-fit, Fit view,
the colorbar's width, extreme images, small windows, overlay modes, the export dialog."""
import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from . import swin_helpers  # noqa: F401  (registers test_tiny_swin)
from .gui_helpers import make_window, open_and_wait
from tests.helpers import random_png

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    return random_png(tmp_path / "img.png", (96, 128, 3), seed=5)


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


def build_wide_vit():
    """A 12x12-patch ViT, to switch to and from the 4x4 test ViT."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=96, patch_size=8, num_layers=6, num_heads=6, hidden_dim=48,
                              mlp_dim=64, num_classes=5)
    torch.nn.init.normal_(model.heads.head.weight, std=0.2)
    return model


def _register_wide():
    from vitviz.core.models.registry import ModelSpec, Preprocess, register

    register(ModelSpec("test_wide_vit", "vit", "12x12 ViT (tests)", "tests.test_gui_ux:build_wide_vit",
                       Preprocess("center_crop", 96, resize=96), classes="none", group="Tests"))


def _view_rect(vb):
    (x0, x1), (y0, y1) = vb.viewRange()
    return x0, y0, x1, y1


def _covers_snugly(vb, w, h):
    """The view shows all of (0, 0, w, h) and, in the dimension that limits it, not much more."""
    x0, y0, x1, y1 = _view_rect(vb)
    inside = x0 <= 0 and y0 <= 0 and x1 >= w and y1 >= h
    snug = min((x1 - x0) / w, (y1 - y0) / h) < 1.1
    return inside and snug


def test_views_refit_when_model_or_image_changes_and_keep_zoom_on_the_same_image(qtbot, tmp_path, image_file):
    _register_wide()
    win = make_window(qtbot, tmp_path, model="test_wide_vit")
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    assert a.grid.shape == (12, 12)
    panel.update_state(layer=5, head=5)  # the outline on the last tile of the 6x6 grid
    grid_vb = panel.grid_view.plot.vb
    with qtbot.waitSignal(win.analysisShown, timeout=60000):
        win.set_model("test_tiny_vit")  # 4x4 patches, 3 layers x 4 heads
    w, h = panel.grid_view.image.width(), panel.grid_view.image.height()
    assert _covers_snugly(grid_vb, w, h), (_view_rect(grid_vb), w, h)
    view = panel.main_view
    view.vb.scaleBy((0.5, 0.5))  # the user zooms in...
    zoomed = _view_rect(view.vb)
    with qtbot.waitSignal(win.analysisShown, timeout=60000):
        win.set_model("test_wide_vit")  # ...a model change on the same image keeps that zoom
    assert np.allclose(_view_rect(view.vb), zoomed)
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    open_and_wait(qtbot, win, tiny)  # another image (a 1x1 one): fitted, not a dot
    assert _covers_snugly(view.vb, 1, 1), _view_rect(view.vb)


def test_fit_view_key_and_double_click_and_zoom_out_limit(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    view = panel.main_view
    fitted = _view_rect(view.vb)
    view.vb.scaleBy((0.3, 0.3))
    view.vb.translateBy((20, 10))
    fit = next(a for a in win.actions() if a.shortcut().toString() == "F")
    fit.trigger()
    assert np.allclose(_view_rect(view.vb), fitted, atol=1e-6)
    assert np.allclose(_view_rect(panel.method_view.vb), fitted, atol=1e-6)  # linked
    for _ in range(30):
        view.vb.scaleBy((1.5, 1.5))  # zoom out far
    x0, y0, x1, y1 = _view_rect(view.vb)
    fx0, fy0, fx1, fy1 = fitted
    assert (x1 - x0) <= 1.5 * (fx1 - fx0) * 1.01 and (y1 - y0) <= 1.5 * (fy1 - fy0) * 1.01
    view.vb.scaleBy((0.2, 0.2), center=(10, 10))
    # a double-click on the empty space left of the image fits again
    x0, y0, x1, y1 = _view_rect(view.vb)
    view.vb.translateBy((-(x1 - x0) / 2, 0))
    x0, y0, x1, y1 = _view_rect(view.vb)
    assert x0 < 0
    pos = view.view_to_widget(x0 / 2, (y0 + y1) / 2)
    left = QtCore.Qt.MouseButton.LeftButton
    # what a real double-click delivers: a click, then the double-click's press and release
    qtbot.mouseClick(view.viewport(), left, pos=pos)
    qtbot.mouseDClick(view.viewport(), left, pos=pos)
    qtbot.mouseRelease(view.viewport(), left, pos=pos)
    assert np.allclose(_view_rect(view.vb), fitted, atol=1e-6)


def test_colorbar_keeps_its_width_so_the_heatmap_does_not_move(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    view = win.panels["vit"].main_view
    values = a.attention_map(0, "mean", "cls")
    lefts = []
    for scale in (1.0, 0.00123, 12345.6, -0.5):
        view.set_map(values * scale, a.grid.extent())
        QtCore.QCoreApplication.processEvents()
        qtbot.wait(20)
        lefts.append((view.vb.sceneBoundingRect().left(), view.vb.sceneBoundingRect().width()))
        labels = [s for _, ticks in view.colorbar.axis.tickValues(*view.levels, 200)
                  for s in view.colorbar.axis.tickStrings(ticks, 1, 1)]
        assert labels and max(map(len, labels)) <= 8, labels
    assert len(set(lefts)) == 1, lefts


def test_export_dialog_folder_name_and_a_failed_save_keeps_it_open(qtbot, tmp_path, image_file, monkeypatch):
    from PySide6 import QtWidgets

    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_PICTURES_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    seen = {}

    def drive():
        dlg = win.export_dialog
        seen["first"] = dlg.path()
        dlg.kind_combo.setCurrentIndex(dlg.kind_combo.findData("grid"))  # the name follows the figure
        seen["grid"] = dlg.path()
        seen["heights"] = (dlg.pages.height(), dlg.pages.currentWidget().sizeHint().height())
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        dlg.path_edit.setText(str(blocker / "fig.png"))  # cannot be written: its folder is a file
        dlg.dpi_spin.setValue(300)
        dlg._on_accept()
        seen["after_failure"] = (dlg.isVisible(), dlg.error_label.text(), dlg.dpi_spin.value(), dlg.kind)
        dlg.path_edit.setText(str(tmp_path / "out" / "fig.png"))
        (tmp_path / "out").mkdir()
        dlg._on_accept()

    QtCore.QTimer.singleShot(100, drive)
    fit = next(a for a in win.actions() if a.shortcut().toString() == "Ctrl+E")
    fit.trigger()
    assert seen["first"] == str(home / "Pictures" / "img_attention.png")  # not next to the image
    assert seen["grid"] == str(home / "Pictures" / "img_grid.png")
    assert seen["heights"][0] <= seen["heights"][1] + 12  # the stack is the shown page's height
    visible, error, dpi, kind = seen["after_failure"]
    assert visible and "Not saved" in error and "a_file" in error and (dpi, kind) == (300, "grid")
    assert (tmp_path / "out" / "fig.png").exists()
    assert str(win.settings.value("paths/export_dir")) == str(tmp_path / "out")
    win.panels["vit"].step_head(1)
    QtCore.QTimer.singleShot(100, lambda: (seen.update(again=win.export_dialog.path()), win.export_dialog.reject()))
    fit.trigger()
    assert seen["again"] == str(tmp_path / "out" / "img_attention.png")  # the last export's folder
    assert isinstance(win.export_dialog, QtWidgets.QDialog)


def test_a_strip_image_says_what_the_model_saw_and_shows_its_input_there(qtbot, tmp_path, image_file):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 2000, 3), dtype=np.uint8)).save(strip)
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, strip)
    panel = win.panels["vit"]
    x0, y0, x1, y1 = a.grid.transform.visible_rect()
    assert np.allclose((x1 - x0, y1 - y0), 20 * 64 / 72)  # test ViT: shorter side to 72, centre crop 64
    note = a.input_note()
    assert note and "saw only 18×18 px of this 2000×20 image (0.79%)" in note
    assert note in win.banner.text() + win.banner.details()  # said in the notice above the views
    assert panel.state.model_view and panel.model_view_check.isChecked()  # M, turned on for the user
    vx0, vy0, vx1, vy1 = _view_rect(panel.main_view.vb)
    assert vx0 <= x0 and vx1 >= x1 and (vx1 - vx0) < 3 * (x1 - x0)  # zoomed to the crop, not a line
    assert "F shows the whole image" in win.statusBar().currentMessage()
    open_and_wait(qtbot, win, image_file)  # an ordinary image: M goes back off (it was not the user's)
    assert not panel.state.model_view and a.input_note() and not win.analysis.input_note()
    panel.model_view_check.setChecked(True)  # the user's own M stays on
    open_and_wait(qtbot, win, strip)
    open_and_wait(qtbot, win, image_file)
    assert panel.state.model_view


def test_alpha_overlay_shows_one_colour_whose_opacity_is_the_value(qtbot, tmp_path):
    from vitviz.core.colormaps import lookup_table

    gray = tmp_path / "gray.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(gray)
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, gray)
    panel = win.panels["vit"]
    win.display.grid_check.setChecked(False)
    win.display.opacity_slider.setValue(80)
    win.display.overlay_combo.setCurrentIndex(win.display.overlay_combo.findData("alpha"))
    assert panel.state.overlay == "alpha"
    view = panel.main_view
    assert "value = opacity" in view.colorbar.axis.labelText
    values = a.attention_map(panel.layer, panel.head, panel.query, panel.direction)
    lo, hi = view.levels
    top = lookup_table(win.display.colormap)[-1, :3].astype(float)
    from .gui_helpers import pixel_at

    for r in range(a.grid.rows):
        for c in range(a.grid.cols):
            t = 0.8 * (values[r, c] - lo) / (hi - lo)
            want = 128 * (1 - t) + top * t  # the photo's grey under one colour at the value's opacity
            got = pixel_at(view, *_centre(a.grid.rect(r, c))).astype(float)
            assert np.abs(got - want).max() <= 3, (r, c, got, want)
    # remembered, and exported as shown (the sidecar records it)
    assert win.settings.value("display/overlay") == "alpha"
    sources = panel.export_sources()
    assert sources.views["attention"].overlay == "alpha" and sources.settings["overlay"] == "alpha"


def test_a_squeezed_strip_is_drawn_as_the_model_saw_it_not_as_a_line(qtbot, tmp_path):
    from vitviz.core.models.registry import ModelSpec, Preprocess, register

    register(ModelSpec("test_squeeze_vit", "vit", "Squeezing ViT (tests)", "tests.test_gui_ux:build_wide_vit",
                       Preprocess("resize", 96), classes="none", group="Tests"))
    strip = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 20000, 3), dtype=np.uint8)).save(strip)
    win = make_window(qtbot, tmp_path, model="test_squeeze_vit")
    a = open_and_wait(qtbot, win, strip)
    panel = win.panels["vit"]
    assert "squeezed to 96×96 (400× out of shape)" in a.input_note()
    assert panel.state.model_view and panel.model_view_check.isChecked()  # M, turned on for the user
    assert "squeezed 400×" in win.statusBar().currentMessage()
    qtbot.wait(50)
    vb = panel.main_view.vb
    (x0, x1), (y0, y1) = vb.viewRange()
    assert x0 <= 0 and x1 >= 20000 and y0 <= 0 and y1 >= 50  # the whole strip is in view...
    on_screen = (vb.width() * 20000 / (x1 - x0), vb.height() * 50 / (y1 - y0))
    assert 0.8 < on_screen[0] / on_screen[1] < 1.25  # ...as the model's square input, not a 1-px line
    # a tile at the map's centre is as wide as it is tall on screen, and a click there selects it
    r, c = a.grid.shape[0] // 2, a.grid.shape[1] // 2
    _click(qtbot, panel.main_view, *_centre(a.grid.rect(r, c)))
    assert panel.query == (r, c)
    panel.model_view_check.click()  # M off: the photo's own shape again
    qtbot.wait(50)
    (x0, x1), (y0, y1) = vb.viewRange()
    assert (vb.width() / (x1 - x0)) / (vb.height() / (y1 - y0)) == pytest.approx(1, rel=1e-3)
    ordinary = tmp_path / "ordinary.png"
    Image.fromarray(np.zeros((90, 120, 3), np.uint8)).save(ordinary)
    open_and_wait(qtbot, win, ordinary)
    assert not panel.state.model_view  # the user's choice (off) stays


@pytest.mark.parametrize("size", [(640, 420), (1024, 640), (1920, 1080)])
def test_small_and_large_windows_fit_toolbar_side_column_views_and_labels(qtbot, tmp_path, image_file, size):
    from PySide6 import QtGui, QtWidgets

    _register_wide()
    win = make_window(qtbot, tmp_path, model="test_wide_vit")  # 6 layers x 6 heads: many labels
    win.resize(*size)
    a = open_and_wait(qtbot, win, image_file)
    qtbot.wait(100)
    panel = win.panels["vit"]
    w = win.width()
    assert panel.side_split.sizes()[0] <= max(190, 0.31 * w)  # the side column gives way
    toolbar = win.findChild(QtWidgets.QToolBar, "main-toolbar")
    ext = toolbar.findChild(QtWidgets.QToolButton, "qt_toolbar_ext_button")
    assert ext is None or not ext.isVisible()  # every picker on the toolbar, none behind "»"
    for combo in (win.model_combo, win.weights_combo, win.device_combo):
        assert combo.isVisible() and combo.width() > 40
    view = panel.main_view
    bar = view.colorbar.sceneBoundingRect()
    assert bar.right() <= view.width() + 1 and view.vb.sceneBoundingRect().right() <= bar.left() + 1
    rows, cols = panel.grid_view.tick_labels()
    fm = QtGui.QFontMetrics(QtGui.QFont())
    vb = panel.grid_view.plot.vb
    L, H = panel.grid_view.grid_shape
    r, c = panel.grid_view.tile_shape
    scale = min(vb.width() / (H * (c + 1) - 1), vb.height() / (L * (r + 1) - 1))
    step = H // len(cols) if len(cols) < H else 1
    assert scale * (c + 1) * step >= max(fm.horizontalAdvance(t) for t in cols)  # labels do not touch
    assert len(cols) >= 1 and len(rows) >= 1
    win.grab().save(str(tmp_path / f"window_{size[0]}x{size[1]}.png"))
    panel.toggle_side()  # Ctrl+B: the views take the whole width
    assert panel.side_split.sizes()[0] == 0
    panel.toggle_side()
    assert panel.side_split.sizes()[0] > 0


def test_every_view_command_reaches_the_detr_panel_and_m_says_why_it_does_nothing(qtbot, tmp_path, image_file):
    from .test_detr_api import TINY_DETR  # noqa: F401  (registers test_tiny_detr)

    win = make_window(qtbot, tmp_path, model="test_tiny_detr")
    for act in win.actions():  # before any result: nothing happens, nothing raises
        if act.shortcut().toString() in ("M", "F", "Ctrl+B", "PgDown", "]", "D", "C"):
            act.trigger()
    open_and_wait(qtbot, win, image_file)
    m = next(a for a in win.actions() if a.shortcut().toString() == "M")
    m.trigger()
    assert "not available for DETR" in win.statusBar().currentMessage()
    panel = win.panels["detr"]
    panel.update_state(layer=1)
    next(a for a in win.actions() if a.shortcut().toString() == "PgUp").trigger()  # previous layer
    assert panel.state.layer == 0
