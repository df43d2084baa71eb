"""The soak, short: the real window driven by a few hundred seeded random events (image and model
switches among the demo ViT / Swin / DETR, clicks, keys, control changes) sent faster than
inference completes; after every settle each map view paints what the API gives for the same
state. The long run is `vitviz bench --only soak`."""
from __future__ import annotations

import numpy as np
import pytest

from vitviz.bench.soak import RSS_GOAL_MIB, _Soak, run_soak

pytestmark = pytest.mark.gui


def test_short_soak_survives_and_every_settled_frame_is_the_apis(qapp, tmp_path):
    res = run_soak(seed=7, events=300, workdir=tmp_path)
    s = res.summary()
    print(s)
    assert sum(res.counts.values()) == 300 and all(res.counts.get(k, 0) > 0 for k in
                                                   ("image", "model", "click", "key", "control")), res.counts
    assert res.settles >= 15 and res.views_checked >= res.settles - res.warmup_settles
    assert res.exceptions == [] and res.stale == [] and res.warnings == []
    assert res.threads_left == []
    assert res.rss_growth_mib <= RSS_GOAL_MIB, s
    assert res.seconds < 60, s


def test_the_check_sees_a_frame_that_is_not_the_apis(qapp, tmp_path):
    soak = _Soak(seed=3, events=0, workdir=tmp_path, images=2)
    try:
        soak.win.set_image_list([soak.images[0]])
        soak.settle(0)
        assert soak.result.stale == [] and soak.result.views_checked >= 1
        view = soak.win.stack.currentWidget().main_view
        img = view.overlay.image.copy()
        img[0, 0, :3] = 255 - img[0, 0, :3]  # one cell painted wrong
        view.overlay.setImage(img, levels=(0, 255))
        soak.check(1)
        assert [(i, title) for i, title, _ in soak.result.stale] == [(1, soak.result.stale[0][1])]
        assert "max difference" in soak.result.stale[0][2]
        soak.result.stale.clear()
        soak.win.image_path = soak.images[1]  # the window says one image, the frame is of another
        soak.check(2)
        assert soak.result.stale and "asked" in soak.result.stale[0][2]
    finally:
        soak.win.image_path = soak.images[0]
        soak.win.close()
        soak.win.deleteLater()


def test_method_view_follows_layer_and_head_when_the_method_is_attention(qapp, tmp_path):
    soak = _Soak(seed=1, events=0, workdir=tmp_path, images=1)
    try:
        soak.win.set_image_list([soak.images[0]])
        soak.settle(0)
        panel = soak.win.stack.currentWidget()
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("attention"))
        panel.step_head(1)
        panel.step_layer(-1)
        soak.settle(1)
        assert soak.result.stale == []
    finally:
        soak.win.close()
        soak.win.deleteLater()


@pytest.mark.slow
def test_counted_soak_sends_exactly_the_counts_and_leaves_nothing_behind(qapp, tmp_path):
    """The issue's soak in small: exact counts of switches (a random-weights Swin-T among the
    models), then no Qt object, top-level widget or thread of the window left, the worker idle."""
    from vitviz.bench.soak import FULL_MODELS, UI_KINDS

    res = run_soak(seed=11, workdir=tmp_path, images=3, models=FULL_MODELS,
                   counts={"image": 8, "model": 4, "ui": 40})
    s = res.summary()
    print(s)
    assert res.events == 52 and res.counts["image"] == 8 and res.counts["model"] == 4
    assert sum(res.counts.get(k, 0) for k in UI_KINDS) == 40
    assert res.exceptions == [] and res.stale == [] and res.warnings == []
    assert res.threads_left == [] and res.qthreads_left == [] and res.toplevel_left == []
    assert res.qobjects_left == {}, res.qobjects_left
    assert res.worker_pending is not None and res.worker_pending < 1.0  # its queue was empty
