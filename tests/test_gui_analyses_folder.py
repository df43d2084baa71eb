"""Analyse folder... in the analyses window: the analyses run over the folder's images in a worker
thread (never the GUI thread) with progress and a cancel; the plots then show the mean over the images
(checked against the equations, image by image); a broken file is listed, not fatal; the run uses its
own copy of the model's modules so the main window's capture hooks never see its forwards."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

import tests.test_analyses  # noqa: F401 (registers test_reg_vit: class, distillation, 2 registers)
import vitviz
from vitviz.gui.analyses_window import FOLDER, IMAGE, AnalysesWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + 6 * i, 56, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    Image.fromarray(rng.integers(0, 256, (50, 50), dtype=np.uint8)).save(d / "sub" / "grey.jpg")
    (d / "broken.png").write_bytes(b"\x89PNG but not really")
    return d


@pytest.fixture
def win(qtbot):
    w = AnalysesWindow()
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.shutdown()


def shown(qtbot, win, analysis):
    with qtbot.waitSignal(win.resultsShown, timeout=30000):
        win.set_analysis(analysis)


def distance_by_hand(a) -> np.ndarray:
    """Mean attention distance from the issue's definition, loop by loop."""
    g, p = a.grid, a.num_prefix_tokens
    centres = [((c + 0.5) * g.cell_w, (r + 0.5) * g.cell_h) for r in range(g.rows) for c in range(g.cols)]
    d = np.array([[np.hypot(xi - xj, yi - yj) for xj, yj in centres] for xi, yi in centres])
    out = np.zeros((a.num_layers, a.num_heads))
    for layer in range(a.num_layers):
        for h in range(a.num_heads):
            block = np.asarray(a.attention(layer)[h], np.float64)[p:, p:]
            # each patch query's row renormalised over the patch keys; a row with no mass there
            # (all on the class / register tokens, or float16 underflow) has no distance
            out[layer, h] = np.mean([(block[i] / block[i].sum() * d[i]).sum()
                                     for i in range(len(centres)) if block[i].sum() > 0])
    return out


def entropy_by_hand(a) -> np.ndarray:
    p = a.num_prefix_tokens
    out = np.zeros((a.num_layers, a.num_heads))
    for layer in range(a.num_layers):
        for h in range(a.num_heads):
            rows = np.asarray(a.attention(layer)[h], np.float64)[p:]
            out[layer, h] = np.mean([-(r[r > 0] * np.log(r[r > 0])).sum() for r in rows])
    return out


def run_folder(qtbot, win, folder, timeout=60000):
    with qtbot.waitSignal(win.folder_bar.finished, timeout=timeout) as blocker:
        assert win.folder_bar.start(folder)
    return blocker.args[0]


def test_folder_means_shown_in_the_scatter_and_broken_file_listed(qtbot, win, folder):
    from vitviz.core.batch.folder import list_images
    from vitviz.core.gradients import model_of

    a = vitviz.analyze(folder / "im0.png", model="test_reg_vit")
    shown(qtbot, win, a)
    steps = []
    win.folder_bar._signals.progress.connect(lambda rid, done, total: steps.append((done, total)))
    res = run_folder(qtbot, win, folder)
    images = [s for s in list_images([folder]) if not s.endswith("broken.png")]
    assert res.sources == images and not res.cancelled
    assert [s for s, _ in res.failures] == [str(folder / "broken.png")]
    assert "not an image Pillow can read" in res.failures[0][1]
    assert steps and steps[-1] == (6, 6)  # every file counted, the broken one too
    # the means: image by image from the equations (the same model object: same random weights)
    loaded = model_of(a)
    per = [vitviz.analyze(p, model=loaded) for p in images]
    want_d = np.mean([distance_by_hand(x) for x in per], axis=0)
    want_e = np.mean([entropy_by_hand(x) for x in per], axis=0)
    np.testing.assert_allclose(res.means["attention_distance"], want_d, rtol=2e-3)  # batched vs one float16 forward
    np.testing.assert_allclose(res.means["attention_entropy"], want_e, rtol=2e-3)
    assert win.source_box.currentIndex() == FOLDER and win.showing_folder
    assert win.source_box.currentText() == "the folder (5 images)"
    ys = sorted(pt.pos().y() for pt in win.scatter.points())
    assert ys == pytest.approx(sorted(res.means["attention_distance"].ravel()))
    assert "5 images" in win.scatter_plot.getAxis("left").labelText
    label = win.folder_bar.label.text()
    assert label.startswith("5 image(s) of ") and "1 file(s) could not be read (broken.png" in label
    assert "broken.png" in win.folder_bar.label.toolTip()
    win.entropy_box.setChecked(True)
    assert sorted(pt.pos().y() for pt in win.scatter.points()) == \
        pytest.approx(sorted(res.means["attention_entropy"].ravel()))
    win.source_box.setCurrentIndex(IMAGE)  # back to the image on screen
    assert sorted(pt.pos().y() for pt in win.scatter.points()) == \
        pytest.approx(sorted(a.analyse("attention_entropy").ravel()))
    # clicking a dot still selects the layer and head for the main view
    win.source_box.setCurrentIndex(FOLDER)
    assert win.value_text(1, 2).startswith(f"layer 1, head 2: entropy {res.means['attention_entropy'][1, 2]:.2f}")


def test_runs_in_a_worker_thread_and_the_gui_stays_responsive(qtbot, win, folder, monkeypatch):
    import vitviz.core.analysis.distance as distance

    a = vitviz.analyze(folder / "im1.png", model="test_reg_vit")
    shown(qtbot, win, a)
    threads, real = [], distance.vit

    def slow(x):
        threads.append(threading.get_ident())
        time.sleep(0.15)
        return real(x)

    monkeypatch.setattr(distance, "vit", slow)
    ticks = []
    timer_start = time.perf_counter()
    with qtbot.waitSignal(win.folder_bar.finished, timeout=60000):
        win.folder_bar.start(folder)
        assert win.folder_bar.running and not win.folder_bar.button.isEnabled()
        assert win.folder_bar.cancel_button.isVisible() and win.folder_bar.bar.isVisible()
        while win.folder_bar.running:  # the event loop turns while the run goes on
            ticks.append(time.perf_counter() - timer_start)
            qtbot.wait(20)
    assert len(threads) == 5 and threading.get_ident() not in threads
    assert len(ticks) > 10 and max(np.diff(ticks)) < 0.5
    assert not win.folder_bar.running and win.folder_bar.button.isEnabled()
    assert not win.folder_bar.bar.isVisible()


def test_cancel_keeps_the_mean_of_the_images_done(qtbot, win, tmp_path, monkeypatch):
    import vitviz.core.analysis.distance as distance
    import vitviz.gui.analyses_folder as af

    d = tmp_path / "many"
    d.mkdir()
    for i in range(12):
        Image.fromarray(np.full((40, 40, 3), 20 * i, np.uint8)).save(d / f"{i:02d}.png")
    a = vitviz.analyze(d / "00.png", model="test_reg_vit")
    shown(qtbot, win, a)
    real = distance.vit
    monkeypatch.setattr(distance, "vit", lambda x: time.sleep(0.1) or real(x))
    monkeypatch.setattr(af, "BATCH", 2)
    win.folder_bar._signals.progress.connect(lambda rid, done, total: win.folder_bar.cancel())
    res = run_folder(qtbot, win, d)
    assert res.cancelled and 0 < len(res.sources) < 12
    assert win.folder_bar.label.text().startswith(f"Cancelled: shown over the {len(res.sources)} image(s) done")
    assert win.showing_folder and win.source_box.currentText() == f"the folder ({len(res.sources)} images)"


def test_another_model_on_screen_drops_the_folder_result_and_close_waits(qtbot, win, folder):
    a = vitviz.analyze(folder / "im0.png", model="test_reg_vit")
    shown(qtbot, win, a)
    run_folder(qtbot, win, folder)
    assert win.showing_folder
    shown(qtbot, win, vitviz.analyze(folder / "im0.png", model="test_reg_vit"))  # same model: kept
    assert win.showing_folder
    shown(qtbot, win, vitviz.analyze(folder / "im0.png", model="test_tiny_vit", weights="random"))
    assert win.folder is None and win.source_box.currentIndex() == IMAGE
    assert not win.source_box.model().item(FOLDER).isEnabled()
    assert win.folder_bar.start(folder)  # a run in flight when the window closes: cancelled, waited for
    win.close()
    assert win.folder_bar._pool.activeThreadCount() == 0


def test_empty_folder_and_no_model_say_why(qtbot, win, tmp_path):
    class Plain:  # an analysis without the model it came from: a folder run has nothing to run
        family, model_name, weights = "vit", "x", "random"

    win.folder_bar.set_analysis(Plain(), ("attention_distance",))
    assert not win.folder_bar.button.isEnabled()
    a = vitviz.analyze(np.full((40, 40, 3), 9, np.uint8), model="test_tiny_vit", weights="random")
    shown(qtbot, win, a)
    assert win.folder_bar.button.isEnabled()
    (tmp_path / "empty").mkdir()
    assert not win.folder_bar.start(tmp_path / "empty")
    assert win.folder_bar.label.text() == f"No image files in {tmp_path / 'empty'}."


def test_private_model_shares_weights_but_not_the_capture_hooks():
    from vitviz.core.analysis.over_images import private_model
    from vitviz.core.api import get_model
    from vitviz.core.capture.vit import attention_modules, capture_attention

    lm = get_model("test_tiny_vit", "random", cache=False)
    with capture_attention(lm.module) as store:  # the main window's worker, mid-forward
        mine = private_model(lm)
        assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks_with_kwargs) == 0
                   for m in attention_modules(mine.module))
        import torch

        with torch.no_grad():
            mine.module(torch.zeros(1, 3, 64, 64))
        assert store == []  # its forward was not recorded by the other capture
    assert all(p is q for p, q in zip(lm.module.parameters(), mine.module.parameters()))
    assert mine.module is not lm.module and mine.preprocess is lm.preprocess
