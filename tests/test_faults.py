"""Faults injected on purpose, as a user meets them: an exception in a slot, a damaged settings file,
an export that cannot be written (read-only, full, the folder removed mid-write), the worker raising
in the middle of a run, a checkpoint deleted while it loads, a damaged file in the weights cache, a
download cut off mid-way. Each checks what the user sees and that the session goes on. Faults other
tests cover already are not repeated here: a model switch mid-run
(test_gui_models::test_switching_mid_run_supersedes_the_run), an image switch mid-run
(test_gui_vit::test_superseded_results_are_dropped), cancel during a download
(test_gui_models::test_cancel_leaves_no_file_and_keeps_the_analysis) and during a folder run
(test_stats_run::test_cancelled_run_keeps_rows_and_resumes, test_batch::test_cancel_and_progress), a
checkpoint that fails to load (test_gui_vit::test_bad_checkpoint_restores_model_and_weights), ENOSPC
in the writer itself (test_export)."""
from __future__ import annotations

import errno
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore

from .gui_helpers import make_window, open_and_wait

pytestmark = pytest.mark.gui


# -- uncaught exceptions and the settings file, through the real start-up (run_app) ----------------
_DRIVER = textwrap.dedent("""
    import json, os, sys
    from PySide6 import QtCore, QtWidgets
    app = QtWidgets.QApplication(sys.argv[:1])
    out = {}

    class Boom(QtCore.QObject):
        @QtCore.Slot()
        def fire(self):
            raise RuntimeError("injected fault in a slot")

    boom = Boom()

    def look(key):
        win = next(w for w in app.topLevelWidgets() if isinstance(w, QtWidgets.QMainWindow))
        out[key] = win.statusBar().currentMessage()
        out[key + "_model"] = win.model

    QtCore.QTimer.singleShot(300, lambda: look("start"))
    QtCore.QTimer.singleShot(400, boom.fire)          # an exception in a slot
    QtCore.QTimer.singleShot(700, lambda: look("after"))
    QtCore.QTimer.singleShot(800, lambda: (print(json.dumps(out)), app.quit()))
    from vitviz.gui.app import run_app
    code = run_app(images=[], model=sys.argv[1], weights="random")
    print(json.dumps({"exit": code}))
""")


def _run_app(tmp_path, model="demo_vit"):
    env = dict(os.environ, VITVIZ_NO_DIALOGS="1", QT_QPA_PLATFORM="offscreen",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-c", _DRIVER, model], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return lines[0], lines[1], proc.stderr


def test_exception_in_a_slot_is_logged_reported_and_the_session_goes_on(tmp_path):
    seen, end, stderr = _run_app(tmp_path)
    log = tmp_path / "data" / "vitviz" / "vitviz" / "crash.log"
    text = log.read_text()
    assert "RuntimeError: injected fault in a slot" in text and "in fire" in text
    for field in ("vitviz ", "platform: ", "python: 3.", "torch: ", "Qt: ", "PySide6: ", "Traceback"):
        assert field in text
    assert "An internal error occurred (uncaught RuntimeError)" in seen["after"] and str(log) in seen["after"]
    assert end == {"exit": 0}  # the event loop went on to the planned quit


def test_a_damaged_settings_file_gives_defaults_and_a_notice(tmp_path):
    conf = tmp_path / "config" / "vitviz"
    conf.mkdir(parents=True)
    (conf / "vitviz.conf").write_bytes(b"[display]\nopacity=abc\n[window]\ngeometry=\xff\xfe\x00junk\n")
    seen, end, _ = _run_app(tmp_path)
    assert seen["start"].startswith("The settings file was damaged (it holds binary data); starting with defaults")
    assert (conf / "vitviz.conf.corrupt").read_bytes().startswith(b"[display]\nopacity=abc")
    assert end == {"exit": 0}
    again, _, _ = _run_app(tmp_path)  # the defaults were written back as a good file: no notice
    assert "damaged" not in again["start"]


@pytest.mark.parametrize("content, why", [
    (b"[model\nname=vit\n", "Qt could not read it"),
    (b"\xc3\x28[model]\n", "not UTF-8"),
    (b"[model]\nname=demo_vit\ngarbage line\n", "line 3 is neither"),
    (b"[display]\nopacity=abc\n", "display/opacity"),
    (b"[window]\ngeometry=hello\n", "window/geometry"),
])
def test_settings_problems_are_named(tmp_path, content, why):
    from vitviz.gui.crash_report import settings_problem

    path = tmp_path / "s.ini"
    path.write_bytes(content)
    assert why in settings_problem(QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat))
    path.write_bytes(b"[model]\nname=demo_vit\n; a comment\n\n[display]\nopacity=40\n")
    assert settings_problem(QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)) is None


def test_exception_in_a_worker_thread_reaches_the_gui_thread(qtbot, tmp_path, image_file):
    import threading

    from vitviz.gui.crash_report import CrashReporter

    win = make_window(qtbot, tmp_path)
    rep = CrashReporter(QtCore.QCoreApplication.instance(), str(tmp_path / "logs" / "crash.log"))
    old = threading.excepthook
    threading.excepthook = rep.threading_hook
    try:
        t = threading.Thread(target=lambda: 1 / 0, name="fault-thread")
        t.start()
        t.join()
        qtbot.waitUntil(lambda: rep.count == 1, timeout=5000)
    finally:
        threading.excepthook = old
    assert "ZeroDivisionError" in rep.last_report and "in thread fault-thread" in rep.last_report
    assert "crash.log" in win.statusBar().currentMessage() and rep.dialog is None  # no dialog in tests
    assert (tmp_path / "logs" / "crash.log").read_text().count("ZeroDivisionError") >= 1


# -- export: a read-only folder, a full disk ------------------------------------------------------
def _mount_tmpfs(folder, options: str) -> bool:
    """A real tmpfs at `folder` (root on Linux); False where mounting is not allowed."""
    folder.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def mounts():
    made = []
    yield made
    for folder in made:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("fault, options, code, reason", [
    ("read-only", "ro,size=1m", errno.EROFS, "Read-only file system"),
    ("full", "size=4k", errno.ENOSPC, "the disk is full (no space left on device)"),
])
def test_export_that_cannot_be_written_says_why_leaves_nothing_and_keeps_the_figure(
        qtbot, tmp_path, image_file, monkeypatch, mounts, fault, options, code, reason):
    from vitviz.gui import export_request
    from vitviz.gui.export_dialog import ExportDialog, export_from_dialog

    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    before = panel.main_view.grab().toImage()
    folder = tmp_path / "stick"
    if _mount_tmpfs(folder, options):
        mounts.append(folder)
        how = "mounted"
    else:  # no mount here: the same error, injected where the file is created
        def refuse(*args, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(export_request.tempfile, "mkstemp", refuse)
        how = "injected"
    target = folder / "fig.png"
    dlg = ExportDialog(panel.export_sources(), "view", str(target), win)
    qtbot.addWidget(dlg)
    assert export_from_dialog(win, dlg) is None, how
    assert f"Cannot write {target}: {reason}" in win.last_error
    assert win.statusBar().currentMessage().startswith("Cannot write")
    assert os.listdir(folder) == []  # no partial figure, no temporary, no sidecar
    assert win.analysis is a and panel.main_view.grab().toImage() == before  # the figure is still there
    ok = export_from_dialog(win, ExportDialog(panel.export_sources(), "view", str(tmp_path / "f.png"), win))
    assert ok == str(tmp_path / "f.png")  # the next export elsewhere works


@pytest.mark.parametrize("when", ["while the figure is written", "between the figure and its sidecar"])
def test_export_folder_removed_mid_write_says_why_and_keeps_the_figure(qtbot, tmp_path, image_file,
                                                                      monkeypatch, when):
    """The folder (a USB stick pulled, a sync client) disappears in the middle of an export."""
    from vitviz.gui import export_request
    from vitviz.gui.export_dialog import ExportDialog, export_from_dialog

    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    before = panel.main_view.grab().toImage()
    folder = tmp_path / "stick"
    folder.mkdir()
    target = folder / "fig.png"
    os_mod = export_request.os
    real_fsync, real_replace = os_mod.fsync, os_mod.replace
    calls = []

    class PatchedOs:  # export_request's view of os: the folder goes away at the chosen moment
        def __getattr__(self, name):
            return getattr(os_mod, name)

        @staticmethod
        def fsync(fd):
            real_fsync(fd)
            if when == "while the figure is written" and not calls:
                calls.append("fsync")
                shutil.rmtree(folder)

        @staticmethod
        def replace(src, dst):
            real_replace(src, dst)
            calls.append(os.path.basename(dst))
            if when == "between the figure and its sidecar" and len(calls) == 1:
                shutil.rmtree(folder)

    monkeypatch.setattr(export_request, "os", PatchedOs())
    dlg = ExportDialog(panel.export_sources(), "view", str(target), win)
    qtbot.addWidget(dlg)
    assert export_from_dialog(win, dlg) is None
    assert f"Cannot write {folder}" in win.last_error and "No such file or directory" in win.last_error
    assert not folder.exists() or os.listdir(folder) == []  # no partial figure, no temporary
    assert win.analysis is a and panel.main_view.grab().toImage() == before  # the figure is still there
    monkeypatch.setattr(export_request, "os", os_mod)
    folder.mkdir(exist_ok=True)  # the stick is back: the same export works
    assert export_from_dialog(win, ExportDialog(panel.export_sources(), "view", str(target), win)) == str(target)
    assert sorted(os.listdir(folder)) == ["fig.png", "fig.png.json"]


# -- the worker raising in the middle of a run ---------------------------------------------------
def test_worker_raising_mid_run_reports_keeps_the_result_and_the_next_run_works(qtbot, tmp_path, image_file,
                                                                              monkeypatch):
    from vitviz.core import api

    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    real = api.analyze
    calls = []

    def failing(image, model=None, **kw):  # the model loaded, then the forward fails
        calls.append(model.name)
        raise RuntimeError("injected: the forward pass failed")

    monkeypatch.setattr(api, "analyze", failing)
    with qtbot.waitSignal(win.runner.errorRaised, timeout=30000) as err:
        win.set_model("demo_vit", "random")
    assert calls == ["demo_vit"]
    assert err.args[0] == "injected: the forward pass failed"  # an *Error's own text, as the worker gives it
    assert "The previous result is still shown" in win.last_error
    assert win.analysis is a and win.stack.currentWidget() is win.panels["vit"]
    assert (win.model, win.weights) == ("test_tiny_vit", "random") and not win.progress.isVisible()
    monkeypatch.setattr(api, "analyze", real)
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as shown:
        win.set_model("demo_vit", "random")
    assert shown.args[0].model_name == "demo_vit"


# -- a checkpoint deleted or rewritten while it loads --------------------------------------------
@pytest.mark.parametrize("fault", ["deleted", "truncated"])
def test_checkpoint_changing_while_it_loads(qtbot, tmp_path, image_file, monkeypatch, fault):
    import torch

    from tests.helpers import build_tiny_vit

    ckpt = tmp_path / "tiny.pth"
    torch.manual_seed(3)
    torch.save(build_tiny_vit().state_dict(), ckpt)
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    real_load = torch.load

    def load_after_fault(f, *args, **kwargs):  # the file passed the checks; then it changes
        if str(f) == str(ckpt):
            if fault == "deleted":
                os.unlink(ckpt)
            else:
                data = ckpt.read_bytes()
                ckpt.write_bytes(data[: len(data) // 2])
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load_after_fault)
    with qtbot.waitSignal(win.runner.errorRaised, timeout=60000) as err:
        win.set_model("test_tiny_vit", str(ckpt))
    assert "tiny.pth" in err.args[0]
    assert ("No such file" in err.args[0]) if fault == "deleted" else ("truncated" in err.args[0])
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    monkeypatch.setattr(torch, "load", real_load)
    torch.save(build_tiny_vit().state_dict(), ckpt)  # the file is back: loading it works
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as shown:
        win.set_model("test_tiny_vit", str(ckpt))
    assert shown.args[0].weights == "tiny.pth" or "tiny.pth" in str(shown.args[0].weights)


def test_report_dialog_is_copyable_and_collects_later_reports(qtbot, tmp_path, monkeypatch):
    from PySide6 import QtWidgets

    from vitviz.gui.crash_report import CrashReporter

    win = make_window(qtbot, tmp_path)
    monkeypatch.delenv("VITVIZ_NO_DIALOGS")
    rep = CrashReporter(QtCore.QCoreApplication.instance(), str(tmp_path / "crash.log"))
    for exc in (ValueError("first"), KeyError("second")):
        try:
            raise exc
        except Exception as e:  # noqa: BLE001
            rep.excepthook(type(e), e, e.__traceback__)
    qtbot.waitUntil(lambda: rep.count == 2, timeout=5000)
    dlg = rep.dialog
    qtbot.addWidget(dlg)
    assert dlg.isVisible() and not dlg.isModal() and win.isVisible()
    assert dlg.intro.text().startswith("2 errors reached the top of vitviz; the session goes on")
    copy = next(b for b in dlg.findChildren(QtWidgets.QPushButton) if b.text() == "Copy report")
    copy.click()
    text = QtWidgets.QApplication.clipboard().text()
    assert "ValueError: first" in text and "KeyError: 'second'" in text and text.count("platform: ") == 2
    assert (tmp_path / "crash.log").read_text().count("uncaught") == 2


# -- the weights cache and downloads (served from 127.0.0.1; nothing leaves the machine) -------------
ORIGIN = "https://weights.example.invalid/vitviz"  # never contacted: VITVIZ_WEIGHTS_BASE_URL replaces it


@functools.lru_cache(maxsize=None)
def _checkpoint() -> tuple[str, bytes]:
    from tests.helpers import tiny_vit_checkpoint

    return tiny_vit_checkpoint("fault_tiny", 17)


@functools.lru_cache(maxsize=None)
def _spec():
    from vitviz.core.models.registry import ModelSpec, Preprocess, register

    spec = ModelSpec("test_fault_vit", "vit", "Tiny ViT with published weights (fault tests)",
                     "tests.helpers:build_tiny_vit", Preprocess("center_crop", 64, resize=72),
                     weights=f"{ORIGIN}/{_checkpoint()[0]}", classes="none", group="Tests")
    register(spec)
    return spec


class _Server:
    """Serves the tiny checkpoint; the first `cuts` requests promise all of it and hang up half-way."""

    def __init__(self, cuts: int = 0):
        self.requests: list[str] = []
        self.cuts = cuts
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                name, data = _checkpoint()
                if not self.path.endswith(name):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if len(server.requests) <= server.cuts:
                    self.wfile.write(data[: len(data) // 2])  # then the connection drops
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; downloads come from a local server (set up by `serve`)."""
    from vitviz.core.models import weights as wts

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("VITVIZ_DOWNLOAD", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    _spec()
    folder = wts.hub_checkpoint_dir()
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def serve(monkeypatch):
    servers = []

    def start(cuts: int = 0) -> _Server:
        servers.append(_Server(cuts))
        monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", servers[-1].base)
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _damage(data: bytes, how: str) -> bytes:
    if how == "cut off":
        return data[: len(data) * 2 // 3]
    mid = len(data) // 2  # one byte flipped in the middle: still a readable zip, wrong weights
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


@pytest.fixture
def torch_loads(monkeypatch):
    """The paths torch.load is asked to read."""
    import torch

    seen: list[str] = []
    real = torch.load

    def load(f, *args, **kwargs):
        seen.append(os.path.basename(str(f)))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return seen


@pytest.mark.parametrize("how", ["one byte changed", "cut off"])
def test_damaged_cache_file_is_refused_never_loaded_and_downloaded_again(hub, serve, torch_loads, how):
    from vitviz.core.models.cache_check import DamagedCacheFileError
    from vitviz.core.models.loading import load_model

    name, data = _checkpoint()
    (hub / name).write_bytes(_damage(data, how))
    with pytest.raises(DamagedCacheFileError) as info:
        load_model("test_fault_vit", "pretrained")
    msg = str(info.value)
    assert f"The cached weights file {hub / name} is damaged" in msg and "It was not loaded" in msg
    assert f"moved aside to {hub / (name + '.damaged')}" in msg and "answer Download" in msg
    assert f"{ORIGIN}/{name}" in msg  # where a good copy comes from, to fetch by hand
    assert torch_loads == []  # never unpickled
    assert sorted(p.name for p in hub.iterdir()) == [name + ".damaged"]
    from vitviz.core.models import weights as wts

    assert wts.weights_state(_spec()) == "downloadable"  # so the window offers the download again
    server = serve()
    loaded = load_model("test_fault_vit", "pretrained", download=True)
    assert loaded.trained and (hub / name).read_bytes() == data and server.requests == [f"/{name}"]
    assert torch_loads == [name]
    again = load_model("test_fault_vit", "pretrained")  # verified as it came in; a good copy loads
    assert again.trained


def test_damaged_cache_file_in_the_window_keeps_the_result_and_offers_the_download(
        qtbot, tmp_path, image_file, hub, serve, torch_loads):
    name, data = _checkpoint()
    (hub / name).write_bytes(_damage(data, "one byte changed"))
    server = serve()
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    assert win.picker.state_of("test_fault_vit") == "cached"
    with qtbot.waitSignal(win.runner.errorRaised, timeout=60000):
        win.set_model("test_fault_vit", "pretrained")
    assert f"The cached weights file {hub / name} is damaged" in win.last_error
    assert "The previous result is still shown" in win.last_error
    assert win.statusBar().currentMessage().startswith("The cached weights file")
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    assert torch_loads == [] and server.requests == []
    assert win.picker.state_of("test_fault_vit") == "downloadable"  # offered again
    # choosing it again asks to download (the test answers "download"): a good copy, trained maps
    win.downloads.auto_answer = "download"
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        win.set_model("test_fault_vit", "pretrained")
    assert fin.args == ["test_fault_vit", "downloaded"]
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        pass
    assert got.args[0].model_name == "test_fault_vit" and got.args[0].trained
    assert (hub / name).read_bytes() == data and server.requests == [f"/{name}"]


def test_download_cut_off_mid_way_leaves_nothing_and_the_retry_starts_afresh(qtbot, tmp_path, image_file,
                                                                            hub, serve, torch_loads):
    name, data = _checkpoint()
    server = serve(cuts=1)
    win = make_window(qtbot, tmp_path)
    a = open_and_wait(qtbot, win, image_file)
    win.downloads.auto_answer = "download"
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        win.set_model("test_fault_vit", "pretrained")
    assert fin.args == ["test_fault_vit", "failed"]
    msg = win.last_error
    assert f"Could not download {name}" in msg and f"of {len(data)} bytes" in msg or "connection broke" in msg, msg
    assert "vitviz goes on with what it had" in msg and str(hub / name) in msg  # where to put a copy by hand
    assert list(hub.iterdir()) == []  # no truncated file, no temporary: nothing that could be loaded
    assert win.analysis is a and (win.model, win.weights) == ("test_tiny_vit", "random")
    assert torch_loads == [] and not win.downloads.status.isVisible()
    # the retry fetches the whole file from the start and the model runs trained
    with qtbot.waitSignal(win.downloads.finished, timeout=30000) as fin:
        win.set_model("test_fault_vit", "pretrained")
    assert fin.args == ["test_fault_vit", "downloaded"]
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        pass
    assert got.args[0].trained and (hub / name).read_bytes() == data
    assert server.requests == [f"/{name}"] * 2 and [p.name for p in hub.iterdir()] == [name]
