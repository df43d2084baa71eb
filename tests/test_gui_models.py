"""Models and weights as a user meets them: the picker's families and weights states, choosing a
model, the remembered device, switching mid-run, and downloads (served from 127.0.0.1) with
progress, cancel and no network; the --download command line."""
from __future__ import annotations

import functools
import http.server
import io
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6 import QtCore

from vitviz.core.models import weights as wts
from vitviz.core.models.registry import ModelSpec, Preprocess, get_spec, register

from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui

ORIGIN = "https://weights.example.invalid/vitviz"  # never contacted: VITVIZ_WEIGHTS_BASE_URL replaces it
TINY_PRE = Preprocess("center_crop", 64, resize=72)


@functools.lru_cache(maxsize=None)
def tiny_checkpoint() -> tuple[str, bytes]:
    from tests.helpers import tiny_vit_checkpoint

    return tiny_vit_checkpoint("gui_tiny", 11)


def _spec(name: str, file_name: str | None, label: str) -> ModelSpec:
    spec = ModelSpec(name, "vit", label, "tests.helpers:build_tiny_vit", TINY_PRE,
                     weights=f"{ORIGIN}/{file_name}" if file_name else None, classes="none", group="Tests")
    register(spec)
    return spec


DL_SPEC = _spec("test_dl_vit", tiny_checkpoint()[0], "Downloadable tiny ViT (tests)")
BIG_SPEC = _spec("test_dl_big", "big_tiny.pth", "Slow download (tests)")
OTHER_SPEC = _spec("test_other_vit", None, "Second tiny ViT (tests)")
BIG_SIZE = 3 << 20


class _Server:
    """Serves the tiny checkpoint and a big file whose second half waits for `gate`."""

    def __init__(self):
        self.gate = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                name, data = tiny_checkpoint()
                if self.path.endswith(name):
                    self._send(data)
                elif self.path.endswith("big_tiny.pth"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(BIG_SIZE))
                    self.end_headers()
                    try:
                        self.wfile.write(b"\0" * (1 << 20))
                        self.wfile.flush()
                        server.gate.wait(20)
                        self.wfile.write(b"\0" * (BIG_SIZE - (1 << 20)))
                    except OSError:
                        pass
                else:
                    self.send_error(404)

            def _send(self, data: bytes):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("VITVIZ_DOWNLOAD", raising=False)
    return wts.hub_checkpoint_dir()


@pytest.fixture
def served(hub, monkeypatch):
    server = _Server()
    monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", server.base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def _texts(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _choose(combo, data) -> None:
    """What a click on the entry does."""
    i = combo.findData(data)
    assert i >= 0, (data, _texts(combo))
    combo.setCurrentIndex(i)
    combo.activated.emit(i)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_picker_lists_families_with_weights_states(qtbot, tmp_path, hub):
    swin_file = Path(wts.weights_url(get_spec("swin_t")))
    hub.mkdir(parents=True)
    (hub / swin_file.name).write_bytes(b"x")  # "cached" only looks at the file being there
    win = make_window(qtbot, tmp_path, model="vit_b_16", weights="random")
    combo = win.model_combo
    texts = _texts(combo)
    for group in ("ViT (ImageNet)", "Swin (ImageNet)", "DETR (COCO)", "Demo (shapes)",
                  "ViT checkpoints (DINO, DeiT, MAE)"):
        i = texts.index(group)
        assert not combo.model().item(i).isEnabled()  # a heading, not a choice
    assert "Tests" not in texts and combo.findData("test_dl_vit") < 0  # test models stay out
    text_of = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert text_of["vit_b_16"] == "ViT-B/16  ·  download 330 MB"
    assert text_of["swin_t"].endswith("cached") and text_of["demo_vit"].endswith("bundled")
    assert text_of["dino_vits8"].endswith("download") and text_of["detr_resnet50"].endswith("download")
    assert texts[-1] == "Open checkpoint…"
    assert combo.currentData() == "vit_b_16" and combo.currentText().startswith("ViT-B/16")
    assert win.picker.state_of("swin_t") == "cached" and win.picker.state_of("vit_b_32") == "downloadable"
    assert _texts(win.weights_combo) == ["pretrained (download 330 MB)", "random (untrained)", "",
                                         "Open checkpoint…"]
    assert win.weights_combo.currentData() == "random"
    win.set_model("test_tiny_vit", "random")  # a model not in the list is shown under its group
    assert win.model_combo.currentData() == "test_tiny_vit"
    assert win.model_combo.currentText() == "Tiny ViT (tests)  ·  random only"
    assert win.weights_combo.itemText(0) == "pretrained (none published)"


def test_question_names_file_size_url_and_folder(qtbot, tmp_path, served, hub):
    from vitviz.gui.download import download_info, question_box

    win = make_window(qtbot, tmp_path)
    box = question_box(win, download_info(get_spec("vit_b_16"), win.picker.size_of("vit_b_16")))
    text = box.text() + box.informativeText()
    for part in ("ViT-B/16", "vit_b_16-c867db91.pth", "330 MB", f"{served.base}/vit_b_16-c867db91.pth", str(hub)):
        assert part in text
    assert [b.text() for b in box.buttons()].count("Download") == 1


def test_choosing_a_model_runs_it_and_it_is_remembered(qtbot, tmp_path, image_file, hub, monkeypatch):
    from vitviz.gui import model_picker

    monkeypatch.setattr(model_picker, "hidden_group", lambda group: False)  # list the test models
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    _choose(win.model_combo, "test_other_vit")
    assert win.model == "test_other_vit" and win.weights == "random"  # the switch shows at once
    assert "test_other_vit" in win.info_label.text() and "test_other_vit" in win.busy_label.text()
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        pass
    assert got.args[0].model_name == "test_other_vit"
    assert win.picker.recent_models() == ["test_other_vit", "test_tiny_vit"]
    _choose(win.weights_combo, "random")  # re-picking the same weights just runs again
    qtbot.waitSignal(win.analysisShown, timeout=60000).wait()
    win.settings.sync()
    again = make_window(qtbot, tmp_path, model=None, weights=None)
    assert (again.model, again.weights) == ("test_other_vit", "random")
    texts = _texts(again.model_combo)
    assert texts[:3] == ["Recent", "Second tiny ViT (tests)  ·  random only", "Tiny ViT (tests)  ·  random only"]
    assert again.model_combo.currentIndex() > 2  # the entry in its family group, not the Recent copy


def test_switching_mid_run_supersedes_the_run(qtbot, tmp_path, image_file, hub):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    shown = []
    win.analysisShown.connect(lambda a: shown.append(a.model_name))
    win.set_model("test_other_vit", "random")
    win.set_model("test_tiny_vit", "random")  # before the first switch's result can arrive
    assert win.model_combo.currentData() == "test_tiny_vit"
    assert win.progress.isVisible() and "test_tiny_vit" in win.busy_label.text()
    qtbot.waitUntil(lambda: bool(shown), timeout=60000)
    qtbot.wait(200)
    assert shown == ["test_tiny_vit"] and not win.progress.isVisible()


def test_device_choice_is_remembered(qtbot, tmp_path, image_file, hub):
    win = make_window(qtbot, tmp_path)
    items = win.device_combo.model()
    assert [win.device_combo.itemData(i) for i in range(4)] == ["auto", "cpu", "cuda", "mps"]
    assert win.device == "auto" and items.item(0).isEnabled() and items.item(1).isEnabled()
    if not torch.cuda.is_available():
        assert not items.item(2).isEnabled() and items.item(2).toolTip().startswith("Not available:")
        assert items.item(0).text() == "auto (cpu)"
    assert not items.item(3).isEnabled() and "MPS" in items.item(3).toolTip()
    open_and_wait(qtbot, win, image_file)
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        _choose(win.device_combo, "cpu")
    assert win.device == "cpu" and got.args[0].device == "cpu"
    win.settings.sync()
    again = make_window(qtbot, tmp_path)
    assert again.device == "cpu" and again.device_combo.currentData() == "cpu"
    if not torch.cuda.is_available():  # a remembered GPU that is not there: auto, and a note
        again.settings.setValue("model/device", "cuda")
        third = make_window(qtbot, tmp_path)
        assert third.device == "auto" and third.device_combo.currentData() == "auto"
        assert "cuda" in third.statusBar().currentMessage()


def test_download_with_progress_then_runs_trained(qtbot, tmp_path, image_file, served, hub):
    name, data = tiny_checkpoint()
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    assert win.picker.state_of("test_dl_vit") == "downloadable"
    # not asked (no dialogs): runs untrained, the banner says how to get the weights; no network
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        win.set_model("test_dl_vit", "pretrained")
    assert not got.args[0].trained and served.requests == []
    # one line: what runs and why, a Download button; the loader's full note (file, folder) in the tooltip
    assert win.banner.text().startswith("Random weights:") and "not downloaded" in win.banner.text()
    assert "\n" not in win.banner.text() and "UNTRAINED" in win.banner.details() and name in win.banner.details()
    assert win.banner.button.isVisible() and win.banner.button.text().startswith("Download")
    assert win.weights_combo.currentText().startswith("random: pretrained not downloaded")
    # picking "pretrained" again, with the test answering "download"
    win.downloads.auto_answer = "download"
    seen = []
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        _choose(win.weights_combo, "pretrained")
        job = win.downloads.job
        assert job is not None and win.downloads.status.isVisible()
        job.progressed.connect(lambda d, t: seen.append((d, t, win.downloads.status.percent)))
    assert fin.args == ["test_dl_vit", "downloaded"]
    assert seen and seen[-1] == (len(data), len(data), 100.0)
    assert _leftovers(hub) == [name] and (hub / name).read_bytes() == data
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        pass
    a = got.args[0]
    assert a.model_name == "test_dl_vit" and a.trained and a.weights == "pretrained"
    assert not win.banner.isVisible() and not win.downloads.status.isVisible()
    assert win.picker.state_of("test_dl_vit") == "cached"
    assert win.model_combo.currentText().endswith("cached")
    assert win.weights_combo.currentText() == "pretrained (cached)"
    assert served.requests == [f"/{name}"]


def test_cancel_leaves_no_file_and_keeps_the_analysis(qtbot, tmp_path, image_file, served, hub):
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    win.downloads.auto_answer = "download"
    win.set_model("test_dl_big", "pretrained")
    assert win.model_combo.currentText().endswith("downloading…")
    status = win.downloads.status
    qtbot.waitUntil(lambda: win.downloads.job.done_bytes > 0, timeout=20000)
    assert 30 < status.percent < 40 and "big_tiny.pth" in status.label.text()
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        qtbot.mouseClick(status.cancel_button, QtCore.Qt.MouseButton.LeftButton)
        served.gate.set()
    assert fin.args == ["test_dl_big", "cancelled"]
    assert _leftovers(hub) == []  # not even the temporary file
    assert "cancelled" in win.statusBar().currentMessage()
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    assert win.model_combo.currentData() == "test_tiny_vit" and win.weights_combo.currentData() == "random"
    assert not status.isVisible()
    open_and_wait(qtbot, win, image_file)  # still usable


def test_no_network_names_file_url_and_folder(qtbot, tmp_path, image_file, served, hub, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", f"http://127.0.0.1:{port}")
    name = tiny_checkpoint()[0]
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    win.downloads.auto_answer = "download"
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        win.set_model("test_dl_vit", "pretrained")
    assert fin.args == ["test_dl_vit", "failed"]
    msg = win.last_error
    assert name in msg and f"http://127.0.0.1:{port}/{name}" in msg and str(hub / name) in msg
    assert f"{ORIGIN}/{name}" in msg  # the original address, to fetch by hand
    assert _leftovers(hub) == []
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    assert win.weights_combo.currentData() == "random"


def test_command_line_download(served, hub, tmp_path, image_file, capsys):
    from vitviz.__main__ import fetch_weights, main

    name, data = tiny_checkpoint()
    err = io.StringIO()
    assert fetch_weights("test_dl_vit", err) == 0
    out = err.getvalue()
    assert f"Downloading {name}: 100%" in out and f"Saved {hub / name}" in out
    assert (hub / name).read_bytes() == data
    assert fetch_weights("test_dl_vit", err) == 0 and "already downloaded" in err.getvalue()
    assert fetch_weights("no_such_model", err) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--download", "--weights", "random"])
    assert exit_info.value.code == 2
    served.gate.set()
    from vitviz.cli.export import main as export_main

    (hub / name).unlink()
    out_png = tmp_path / "fig.png"
    assert export_main([str(image_file), "--model", "test_dl_vit", "--download", "--out", str(out_png)]) == 0
    captured = capsys.readouterr()
    assert f"Downloading {name}: 100%" in captured.err and out_png.is_file()
    assert "UNTRAINED" not in captured.err  # ran with the downloaded weights


def test_open_checkpoint_entry_and_recent_checkpoints(qtbot, tmp_path, image_file, hub, monkeypatch):
    from PySide6 import QtWidgets

    from vitviz.gui.model_picker import OPEN_CHECKPOINT

    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(tiny_checkpoint()[1])
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a, **k: (str(ckpt), ""))
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        _choose(win.weights_combo, OPEN_CHECKPOINT)  # the file dialog answers mine.pth
    assert got.args[0].trained and win.weights == str(ckpt)
    assert win.weights_combo.currentText() == "mine.pth"
    with qtbot.waitSignal(win.analysisShown, timeout=60000):
        _choose(win.weights_combo, "random")
    assert win.picker.recent_checkpoints() == [{"path": str(ckpt), "model": "test_tiny_vit"}]
    win.settings.sync()
    again = make_window(qtbot, tmp_path, model="test_other_vit", weights="random")
    assert "mine.pth" in _texts(again.weights_combo)  # offered in a new session
    with qtbot.waitSignal(again.analysisShown, timeout=60000) as got:
        again.open_path(str(image_file))
    with qtbot.waitSignal(again.analysisShown, timeout=60000) as got:
        _choose(again.weights_combo, str(ckpt))  # with the model it was opened with
    assert (again.model, again.weights) == ("test_tiny_vit", str(ckpt)) and got.args[0].trained
    with qtbot.waitSignal(again.analysisShown, timeout=60000):  # the model list's entry opens the dialog too
        _choose(again.model_combo, OPEN_CHECKPOINT)
    assert again.model_combo.currentData() == "test_tiny_vit"


def test_banner_download_button_fetches_and_reruns_trained(qtbot, tmp_path, image_file, served, hub):
    name, data = tiny_checkpoint()
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        win.set_model("test_dl_vit", "pretrained")
    assert not got.args[0].trained
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        qtbot.mouseClick(win.banner.button, QtCore.Qt.MouseButton.LeftButton)
    assert got.args[0].trained and served.requests == [f"/{name}"] and (hub / name).read_bytes() == data
    assert not win.banner.isVisible() and win.weights_combo.currentText() == "pretrained (cached)"


def test_banner_says_random_as_chosen_without_a_button(qtbot, tmp_path, image_file):
    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    assert win.banner.text().startswith("Random weights, as chosen") and not win.banner.button.isVisible()


def test_api_warns_of_random_weights_and_download_true_fetches(served, hub, image_file):
    import vitviz
    from vitviz.core.models.errors import RandomWeightsWarning

    name, data = tiny_checkpoint()
    with pytest.warns(RandomWeightsWarning, match="not downloaded.*download=True"):
        a = vitviz.analyze(str(image_file), model="test_dl_vit")
    assert not a.trained and any("UNTRAINED" in n for n in a.notes) and served.requests == []
    b = vitviz.analyze(str(image_file), model="test_dl_vit", download=True)  # the cached random one is not reused
    assert b.trained and served.requests == [f"/{name}"] and (hub / name).read_bytes() == data


def test_cli_suggests_download_for_missing_weights(hub, image_file, tmp_path, capsys):
    import warnings

    from vitviz.__main__ import main

    out = tmp_path / "fig.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI says it as a note, not as a Python warning
        rc = main(["export", str(image_file), "--model", "test_dl_vit", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and out.is_file()
    assert "UNTRAINED" in err and "--download" in err and "model list" not in err
