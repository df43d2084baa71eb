"""The memory estimate made before a run: its attention term against the arrays an analysis really
holds and against layers x heads x N^2 written out by hand, its total against the peak RSS growth
of a fresh process (within 20%), and the window refusing a run that would not fit."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from vitviz.core import memory_estimate as me
from vitviz.core.models.registry import Preprocess, get_spec


@pytest.fixture
def photo():
    rng = np.random.default_rng(2)
    return Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))


def test_token_counts_are_what_the_model_sees():
    # ViT-B/16 at 224: 14 x 14 patches + the class token, 12 layers of 12 heads
    vit = me.architecture(get_spec("vit_b_16"), (640, 480))
    assert [(a.heads, a.queries, a.keys, a.count) for a in vit.attention] == [(12, 197, 197, 1)] * 12
    assert sum(a.elements for a in vit.attention) == 12 * 12 * 197 ** 2
    assert vit.weight_bytes == 4 * sum(p.numel() for p in _built("vit_b_16").parameters())  # no buffers
    # Swin-T at 224: stage k has (56 / 2^k)^2 tokens in 7 x 7 windows (the last stage one 7 x 7 window)
    swin = me.architecture(get_spec("swin_t"), (640, 480))
    want = [(3, 64), (3, 64), (6, 16), (6, 16)] + [(12, 4)] * 6 + [(24, 1)] * 2
    assert [(a.heads, a.count) for a in swin.attention] == want and {a.queries for a in swin.attention} == {49}
    # DETR-R50 on 640 x 480 -> 800 x 1067 (shorter side 800): a stride-32 map of 25 x 34 cells
    detr = me.architecture(get_spec("detr_resnet50"), (640, 480))
    cells, q = 25 * 34, 100
    assert [(a.queries, a.keys) for a in detr.attention] == [(cells, cells)] * 6 + [(q, q), (q, cells)] * 6
    assert me.estimate(detr).attention_kept == 2 * 8 * (6 * cells ** 2 + 6 * q * q + 6 * q * cells)


def _built(name):
    import torch

    from vitviz.core.models.loading import build_module

    spec = get_spec(name)
    with torch.device("meta"):
        return build_module(spec, spec.preprocess)


@pytest.mark.parametrize("name", ["demo_vit", "demo_swin", "demo_detr"])
def test_kept_attention_is_the_bytes_the_analysis_holds(name, photo):
    import vitviz
    from vitviz.bench.capture import attention_arrays

    a = vitviz.analyze(photo, model=name, weights="random")
    held = sum(x.nbytes for x in attention_arrays(a))
    if name == "demo_detr":  # the decoder's arrays too (attention_arrays finds the encoder's)
        assert [x.shape for x in attention_arrays(a)] == [a.enc_attn.shape]
        held += a.dec_self.nbytes + a.dec_cross.nbytes
    assert me.estimate(me.architecture(get_spec(name), photo.size, exact=True)).attention_kept == held
    assert me.estimate(me.architecture(get_spec(name), photo.size, exact=True), "float32").attention_kept == 2 * held


def test_another_aspect_is_scaled_close_to_the_exact_shapes():
    spec = get_spec("detr_resnet50")
    me.architecture(spec, (640, 480))  # cached at 800 x 1067
    for size in ((480, 640), (1000, 400)):
        scaled, exact = me.architecture(spec, size), me.architecture(spec, size, exact=True)
        assert scaled.input_hw == exact.input_hw
        assert me.estimate(scaled).total == pytest.approx(me.estimate(exact).total, rel=0.05)


def test_too_big_names_the_estimate_and_what_would_fit():
    spec = get_spec("vit_l_16")
    full = me.estimate(me.architecture(spec, (640, 480)), "float32")
    half = me.estimate(me.architecture(spec, (640, 480)), "float16")
    with pytest.raises(me.ModelTooLargeError) as err:
        me.check(spec, (640, 480), "float32", available=(full.total + half.total) // 2)
    msg = str(err.value)
    assert me.fmt_bytes(full.total) in msg and "float32" in msg and "float16 attention" in msg
    assert me.check(spec, (640, 480), "float16", available=full.total) == half
    with pytest.raises(me.ModelTooLargeError, match=r"a smaller model: the weights alone need 1\.13 GiB"):
        me.check(spec, (640, 480), available=100 * me.MiB)
    detr = get_spec("detr_resnet50")
    need = me.estimate(me.architecture(detr, (640, 480))).total
    with pytest.raises(me.ModelTooLargeError, match=r"an input of \d+x\d+ px"):
        me.check(detr, (640, 480), available=need - 60 * me.MiB)


def test_available_memory_reads_the_machine():
    free = me.available_memory()
    with open("/proc/meminfo") as f:
        total = int(next(x for x in f if x.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < free <= total


# -- against the process: peak RSS growth of a fresh interpreter -------------------------------------
_CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    import numpy as np
    from PIL import Image
    import torch, torchvision
    from vitviz.core.api import analyze, get_model
    from vitviz.core.memory_estimate import architecture, estimate
    from vitviz.core.models.registry import Preprocess, get_spec

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    name, size = sys.argv[1], int(sys.argv[2])
    spec = get_spec(name)
    if size != spec.preprocess.size:
        pre = (dataclasses.replace(spec.preprocess, size=size, max_size=size * 1333 // 800)
               if spec.family == "detr" else Preprocess("center_crop", size, resize=size))
        spec = dataclasses.replace(spec, name=f"{name}@{size}", preprocess=pre, pretrained_preprocess=None)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    est = estimate(architecture(spec, img.size))  # on the meta device: costs (almost) nothing
    try:
        open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
    except OSError:
        pass
    before = status("VmRSS")
    analyze(img, model=get_model(spec, "random", "cpu"))
    print(json.dumps({"growth": status("VmHWM") - before, "estimate": est.total}))
""")


@pytest.mark.parametrize("name, size", [
    ("demo_swin", 64),  # mostly the runtime's own overhead: the one fast enough for the default run
    pytest.param("vit_b_16", 224, marks=pytest.mark.slow),  # 22 s (random initialisation of 86 M weights)
    pytest.param("vit_b_16", 448, marks=pytest.mark.slow),
    pytest.param("vit_l_16", 384, marks=pytest.mark.slow),
    pytest.param("swin_t", 224, marks=pytest.mark.slow),
    pytest.param("detr_resnet50", 800, marks=pytest.mark.slow),
])
def test_estimate_is_within_20_percent_of_the_measured_peak(name, size):
    proc = subprocess.run([sys.executable, "-c", _CHILD, name, str(size)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name}@{size}: estimate {d['estimate'] / 2**20:.0f} MiB, peak RSS growth {d['growth'] / 2**20:.0f} MiB")
    if name == "demo_swin":
        # a tiny model's peak is the runtime's first-forward overhead, which varies from 20 to 48 MiB
        # between runs on one machine (thread pools, allocator arenas): the estimate must cover the
        # growth and exceed it by no more than that fixed overhead
        assert d["growth"] <= d["estimate"] <= d["growth"] + me.OVERHEAD, d
    else:
        assert d["estimate"] == pytest.approx(d["growth"], rel=0.2), d


# -- the window refuses a run that would not fit -----------------------------------------------------
@pytest.mark.gui
def test_window_refuses_a_run_that_does_not_fit_and_keeps_the_result(qtbot, tmp_path, monkeypatch):
    from .gui_helpers import make_window, open_and_wait

    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    win = make_window(qtbot, tmp_path)
    shown = open_and_wait(qtbot, win, path)
    monkeypatch.setattr(me, "available_memory", lambda device="cpu": 1 * me.MiB)
    with qtbot.waitSignal(win.runner.errorRaised, timeout=30000) as err:
        win.set_model("demo_vit", "random")
    assert "Demo" in err.args[0] or "demo" in err.args[0]
    assert "would need about" in err.args[0] and "only 1 MiB of memory is available" in err.args[0]
    assert "was not run" in win.last_error and win.analysis is shown
    assert (win.model, win.weights) == ("test_tiny_vit", "random")  # back to what is on screen
    monkeypatch.undo()
    with qtbot.waitSignal(win.analysisShown, timeout=60000):  # the next request works
        win.set_model("demo_vit", "random")
    assert win.analysis.model_name == "demo_vit"


def test_unknown_and_external_models_are_not_estimated():
    assert me.check_model("no_such_model", (64, 64)) is None
    assert me.architecture(dataclasses.replace(get_spec("demo_vit"), source="hf"), (64, 64)) is None
    assert me.architecture(dataclasses.replace(get_spec("demo_vit"), preprocess=Preprocess("center_crop", 64, resize=72),
                                               builder="no.such.module:build"), (64, 64)) is None
