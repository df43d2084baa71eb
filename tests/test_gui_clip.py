"""A CLIP model in the ViT panel: the class-specific methods take a typed prompt (and a contrast
prompt) as their target, computed in the worker thread, never in the GUI thread; a classifier brings
the class spin boxes back. Tiny random open_clip towers written by the test (tests/test_clip.py)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore
from PySide6.QtTest import QTest

pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from tests.test_clip import _open_clip_model, hub  # noqa: E402,F401  (hub: the fixture)

from .gui_helpers import make_window, open_and_wait  # noqa: E402
from tests.helpers import random_png

pytestmark = pytest.mark.gui
ARCH = "vitviz-tiny-clip-test"
DOG, CAR = "a photo of a dog", "a diagram of a red car"


@pytest.fixture
def image_file(tmp_path):
    return random_png(tmp_path / "img.png", (60, 80, 3), seed=5)


@pytest.fixture
def clip_name(hub, tmp_path):
    _, ckpt = _open_clip_model(tmp_path, ARCH)
    return f"open_clip:{ARCH}/{ckpt}"


@pytest.fixture
def inference_threads(monkeypatch):
    """The threads that ran the image tower or encoded a new prompt (the text tower)."""
    from vitviz.core.models import clip_text, clip_vit

    seen = []
    image_embedding, encode = clip_vit.CLIPTokenViT.image_embedding, clip_text.TextTower.encode

    def spy_image(self, x):
        seen.append(("image", threading.current_thread().name))
        return image_embedding(self, x)

    def spy_encode(self, prompts):
        if any(p not in self._cache for p in prompts):
            seen.append(("text", threading.current_thread().name))
        return encode(self, prompts)

    monkeypatch.setattr(clip_vit.CLIPTokenViT, "image_embedding", spy_image)
    monkeypatch.setattr(clip_text.TextTower, "encode", spy_encode)
    return seen


def choose(panel, method):
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))


def type_into(qtbot, box, text, enter=True):
    """Select all, type `text` key by key, then Enter (the prompt counts from then on)."""
    box.setFocus()
    box.selectAll()
    QTest.keyClick(box, QtCore.Qt.Key.Key_Delete)
    QTest.keyClicks(box, text)
    if enter:
        QTest.keyClick(box, QtCore.Qt.Key.Key_Return)


def wait_ready(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.method_busy, timeout=60000)


def test_prompt_boxes_drive_the_class_specific_maps(qtbot, tmp_path, image_file, clip_name, inference_threads):
    from magicgui.widgets import LineEdit

    win = make_window(qtbot, tmp_path, model=clip_name, weights="pretrained")
    a = open_and_wait(qtbot, win, image_file)
    assert a.trained and a.logits is None
    panel = win.panels["vit"]
    choose(panel, "relevance")
    form = panel.method_form
    prompt, contrast = form.widget("target"), form.widget("contrast")
    assert isinstance(prompt, LineEdit) and isinstance(contrast, LineEdit)
    assert (prompt.label, contrast.label) == ("Prompt", "Contrast prompt") and prompt.value == ""
    assert "type a prompt" in panel.method_view.title_text() and not panel.method_busy

    maps = panel._grad_maps
    before = maps.requests if maps is not None else 0
    type_into(qtbot, prompt.native, DOG, enter=False)  # typing alone asks for nothing
    qtbot.wait(50)
    assert (panel._grad_maps.requests if panel._grad_maps else 0) == before
    assert dict(panel.state.method_params)["target"] == -1
    QTest.keyClick(prompt.native, QtCore.Qt.Key.Key_Return)
    assert dict(panel.state.method_params)["target"] == DOG
    assert panel.method_busy and "computing" in panel.method_view.title_text()
    wait_ready(qtbot, panel)
    expected = a.explain("relevance", target=DOG)
    np.testing.assert_allclose(panel.current_method_map(), expected)
    assert panel.method_view.levels == (expected.min(), expected.max())
    title = panel.method_view.title_text()
    assert f"'{DOG}', cosine {a.target_info(DOG).score:.3g}" in title

    type_into(qtbot, contrast.native, CAR)  # why a dog rather than a car
    assert dict(panel.state.method_params)["contrast"] == CAR
    wait_ready(qtbot, panel)
    np.testing.assert_allclose(panel.current_method_map(), a.explain("relevance", target=DOG, contrast=CAR))
    assert f"'{DOG}' − '{CAR}', cosine difference" in panel.method_view.title_text()

    choose(panel, "grad_cam")  # the prompts stay the target from method to method
    assert (form.widget("target").value, form.widget("contrast").value) == (DOG, CAR)
    wait_ready(qtbot, panel)
    np.testing.assert_allclose(panel.current_method_map(), a.explain("grad_cam", target=DOG, contrast=CAR))

    type_into(qtbot, form.widget("contrast").native, "")  # emptied: no contrast
    wait_ready(qtbot, panel)
    assert dict(panel.state.method_params)["contrast"] == -1
    np.testing.assert_allclose(panel.current_method_map(), a.explain("grad_cam", target=DOG))
    gui = threading.current_thread().name
    assert inference_threads and all(t != gui for _, t in inference_threads), inference_threads
    win.grab().save(str(tmp_path / "clip-panel.png"))


def test_a_classifier_brings_the_class_boxes_back(qtbot, tmp_path, image_file, clip_name):
    from magicgui.widgets import LineEdit

    win = make_window(qtbot, tmp_path, model=clip_name, weights="pretrained")
    open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    choose(panel, "integrated_gradients")
    type_into(qtbot, panel.method_form.widget("target").native, DOG)
    wait_ready(qtbot, panel)
    assert panel.current_method_map().shape == (4, 4)

    win.set_model("test_tiny_vit", "random")
    qtbot.waitSignal(win.analysisShown, timeout=60000).wait()
    target = panel.method_form.widget("target")
    assert not isinstance(target, LineEdit) and target.value == -1 and target.label == "Target"
    assert dict(panel.state.method_params)["target"] == -1  # the prompt was not carried to a classifier
    wait_ready(qtbot, panel)
    assert "text" not in panel.method_view.title_text()

    win.set_model(clip_name, "pretrained")
    qtbot.waitSignal(win.analysisShown, timeout=60000).wait()
    assert isinstance(panel.method_form.widget("target"), LineEdit)
    assert "type a prompt" in panel.method_view.title_text()
