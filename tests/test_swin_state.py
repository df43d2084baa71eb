"""Swin view state as data and the figure built from it in core: JSON round trip, the CLI's
ViT-style keys, the settings old sidecars wrote, what survives a new image, the checks' messages,
and the build in a process where Qt is never imported.

Uses the tiny real torchvision Swin of swin_helpers: depths 2, 2, 2, 2; heads 2, 2, 4, 4; 18x18
tokens at stage 0 with 5x5 windows shifted by 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import swin_helpers  # noqa: F401  (registers test_tiny_swin)
from vitviz.core.families import get_family
from vitviz.core.figures import ExportError
from vitviz.core.swin.state import SwinState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("swin") / "img.png"
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def a(image):
    import vitviz

    return vitviz.analyze(str(image), model="test_tiny_swin", weights="random")


def _blocks_by_counting(depths):
    """(stage, block) of every block over all stages, counted from the depths alone."""
    return [(s, b) for s, d in enumerate(depths) for b in range(d)]


def test_round_trip_json(a):
    s = SwinState(stage=0, block=1, head=1, point=(30.5, 20.25), direction="to", partition="both",
                  regions=False, summary=True, colormap="magma", opacity=0.4, grid=False, model_view=True)
    j = s.to_json()
    assert json.loads(json.dumps(j)) == j and j["family"] == "swin" and j["point"] == [30.5, 20.25]
    assert SwinState.from_json(j) == s
    r = s.resolved(a)
    assert r.token == a.stage_grid(0).token_at(30.5, 20.25)
    assert SwinState.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.resolved(a) == r


def test_cli_layer_counts_blocks_over_all_stages_and_query_is_a_token(a):
    order = _blocks_by_counting([2, 2, 2, 2])
    for i in range(-len(order), len(order)):
        r = SwinState.from_json({"layer": i}).resolved(a)
        assert (r.stage, r.block) == order[i] and r.layer is None
    r = SwinState.from_json({"layer": 5, "query": "1,2"}).resolved(a)  # as text, as the CLI takes it
    assert (r.stage, r.block, r.token) == (2, 1, (1, 2))
    x0, y0, x1, y1 = a.stage_grid(2).rect(1, 2)
    vx0, vy0, vx1, vy1 = a.grid.transform.visible_rect()
    assert r.point == ((max(x0, vx0) + min(x1, vx1)) / 2, (max(y0, vy0) + min(y1, vy1)) / 2)
    # a "layer" override replaces the state's stage and block; stage/block overrides keep them
    s = SwinState(stage=0, block=0)
    assert (lambda t: (t.stage, t.block))(s.updated({"layer": -1}).resolved(a)) == (3, 1)
    assert (lambda t: (t.stage, t.block))(s.updated({"block": 1}).resolved(a)) == (0, 1)
    # no query: the middle of what the model saw, inside a stage-0 patch
    mid = SwinState(stage=0, block=0).resolved(a)
    vx, vy = (vx0 + vx1) / 2, (vy0 + vy1) / 2
    assert mid.token == a.grid.token_at(vx, vy)
    px0, py0, px1, py1 = a.grid.rect(*mid.token)
    assert mid.point == ((px0 + px1) / 2, (py0 + py1) / 2)


def test_old_sidecar_settings_build_the_same_figure(a):
    """What the previous Swin export wrote as request.settings for `--layer -1 --query 1,2 --head 1
    --direction to` (the panel's view_settings() plus the CLI's keys, stage/block already resolved)."""
    new = SwinState(stage=3, block=1, head=1, direction="to", partition="both", colormap="magma")
    x0, y0, x1, y1 = a.stage_grid(3).rect(1, 2)
    old = {"model_view": False, "family": "swin", "stage": 3, "block": 1, "head": 1,
           "point": [(x0 + x1) / 2, (y0 + y1) / 2], "token": [1, 2], "direction": "to", "partition": "both",
           "regions": True, "summary": False, "colormap": "magma", "opacity": 0.6, "grid": True,
           "layer": -1, "query": [1, 2], "method": "rollout", "method_params": {"head_fusion": "mean",
                                                                              "discard_ratio": 0.0}}
    fam = get_family("swin")
    old_fig = fam.build_figures(a, SwinState.from_json(old))
    new_fig = fam.build_figures(a, new.updated({"query": [1, 2]}))
    assert old_fig.settings == new_fig.settings
    assert list(old_fig.views) == list(new_fig.views) == ["attention", "windows", "summary", "grid", "bias",
                                                          "method", "head:0", "head:1", "head:2", "head:3"]
    for name, view in old_fig.views.items():
        other = new_fig.views[name]
        assert view.title == other.title and view.meta == other.meta
        if hasattr(view, "values"):
            np.testing.assert_array_equal(view.values, other.values)
            assert [(s.kind, s.label) for s in view.shapes] == [(s.kind, s.label) for s in other.shapes]
        else:
            np.testing.assert_array_equal(view.maps, other.maps)
    np.testing.assert_array_equal(old_fig.views["attention"].values, a.attention_map(3, 1, 1, (1, 2), "to"))
    assert old_fig.settings["token"] == [1, 2] and old_fig.settings["stage"] == 3


def test_figure_values_are_the_analysis_maps(a):
    src = get_family("swin").build_figures(a, SwinState(stage=0, block=1, head="max", summary=True),
                                           view_rect=(1.0, 2.0, 50.0, 40.0))
    s = SwinState.from_json(src.settings)
    t = s.token
    np.testing.assert_array_equal(src.views["attention"].values, a.attention_map(0, 1, "max", t))
    np.testing.assert_array_equal(src.views["head:1"].values, a.attention_map(0, 1, 1, t))
    np.testing.assert_array_equal(src.views["summary"].values, a.attention_summary(-1, "max"))
    np.testing.assert_array_equal(src.views["bias"].maps[0], a.relative_position_bias(0, 1))
    assert src.views["grid"].maps.shape[:2] == (2, 2)  # blocks x heads of stage 0
    assert src.current == "summary" and src.views["attention"].view_rect == (1.0, 2.0, 50.0, 40.0)
    # the token's window pieces, outlined in white 3 px: the shifted window of (0, 0) wraps into 4
    s0 = SwinState(stage=0, block=1, query=(0, 0))
    pieces = [sh for sh in get_family("swin").build_figures(a, s0).views["windows"].shapes
              if sh.kind == "rect" and sh.width == 3.0]
    assert len(pieces) == 4 and all(sh.color == (255, 255, 255, 255) for sh in pieces)


def test_explain_attention_speaks_stage_block_and_layer(a):
    np.testing.assert_array_equal(a.explain("attention", stage=1, block=0, head=1, query=(2, 3), direction="to"),
                                  a.attention_map(1, 0, 1, (2, 3), "to"))
    order = _blocks_by_counting([2, 2, 2, 2])
    np.testing.assert_array_equal(a.explain("attention", layer=3, query=(1, 1)),
                                  a.attention_map(*order[3], "mean", (1, 1)))
    np.testing.assert_array_equal(a.explain("attention", query=(0, 0)), a.attention_map(3, 1, "mean", (0, 0)))
    with pytest.raises(ValueError, match="Swin has no class token"):
        a.explain("attention", query="cls")
    with pytest.raises(IndexError, match=r"token \(9, 0\) outside the 9x9 grid of stage 1"):
        a.explain("attention", stage=1, block=0, query=(9, 0))


def test_carried_over_keeps_what_still_fits(a):
    s = SwinState(stage=7, block=5, head=3, point=(-5.0, 10.0), layer=2, query=(1, 1)).carried_over(a)
    assert (s.stage, s.block, s.head, s.point, s.layer, s.query) == (3, 1, 3, None, None, "cls")
    s = SwinState(stage=0, block=1, head=3, point=(30.0, 40.0)).carried_over(a)  # stage 0 has 2 heads
    assert (s.stage, s.block, s.head, s.point) == (0, 1, "mean", (30.0, 40.0))
    assert s.resolved(a).token == a.grid.token_at(30.0, 40.0)


@pytest.mark.parametrize("settings, message", [
    ({"layer": 8}, r"layer 8 is out of range \(the model has 8 blocks over 4 stages: 0..7\)"),
    ({"stage": 4}, r"stage 4 is out of range \(the model has 4 stages: 0..3\)"),
    ({"stage": 1, "block": 2}, r"block 2 is out of range \(stage 1 has 2 blocks\)"),
    ({"stage": 0, "head": 2}, r"head 2 is out of range \(stage 0 has 2 heads: 0..1\)"),
    ({"head": "median"}, "head must be a number or one of mean, max, min"),
    ({"layer": 0, "query": [18, 0]}, r"query: token \(18, 0\) outside the 18x18 grid of stage 0"),
    ({"query": "q3"}, "query must be 'cls' or \\[row, col\\], not 'q3'"),
    ({"point": [-4, 5]}, "no token selected: the point is outside what the model saw"),
    ({"direction": "up"}, "direction must be 'from' or 'to'"),
    ({"partition": "diagonal"}, "partition must be one of block, regular, shifted, both, none"),
    ({"colormap": "rainbow"}, "unknown colormap 'rainbow'"),
])
def test_bad_settings_say_what_is_wrong(a, settings, message):
    with pytest.raises(ExportError, match=message):
        get_family("swin").build_figures(a, SwinState.from_json(settings))


HEADLESS = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "pyqtgraph", "superqt", "shiboken6"):
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, ROOT)
import numpy as np
import vitviz
from tests import swin_helpers
from vitviz.core.families import get_family
a = vitviz.analyze(IMAGE, model="test_tiny_swin", weights="random")
fam = get_family("swin")
src = fam.build_figures(a, fam.state_type().from_json({"layer": 5, "query": [1, 2], "head": 1}))
bad = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "superqt", "shiboken6")]
print(json.dumps({"views": list(src.views), "settings": src.settings, "bad": bad,
                  "attention": np.nan_to_num(src.views["attention"].values, nan=-1).tolist()}))
"""


def test_build_runs_where_qt_is_never_imported(a, image):
    code = HEADLESS.replace("ROOT", repr(str(ROOT))).replace("IMAGE", repr(str(image)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["bad"] == []
    assert out["views"][:5] == ["attention", "windows", "summary", "grid", "bias"]
    assert (out["settings"]["stage"], out["settings"]["block"], out["settings"]["token"]) == (2, 1, [1, 2])
    want = np.nan_to_num(a.attention_map(2, 1, 1, (1, 2)), nan=-1)
    np.testing.assert_allclose(out["attention"], want, rtol=1e-6)


CLI = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("PySide6.QtWidgets", "pyqtgraph", "superqt") or name.startswith("pyqtgraph."):
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, ROOT)
from tests import swin_helpers
from vitviz.__main__ import main
rc = main(["export", IMAGE, "--model", "test_tiny_swin", "--weights", "random", "--view", "attention,windows",
           "--layer", "3", "--query", "2,1", "--head", "1", "--out", OUT, "--width", "320"])
assert rc == 0, rc
rc = main(["export", "--from-sidecar", OUT + ".json"])
assert rc == 0, rc
assert "PySide6.QtWidgets" not in sys.modules
"""


def test_cli_exports_swin_without_widgets_and_reruns_identically(image, tmp_path):
    out = tmp_path / "swin.png"
    code = CLI.replace("ROOT", repr(str(ROOT))).replace("IMAGE", repr(str(image))).replace("OUT", repr(str(out)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "identical to the original swin.png" in res.stderr
    side = json.loads((tmp_path / "swin.png.json").read_text())
    s = side["request"]["settings"]
    assert (s["family"], s["stage"], s["block"], s["head"], s["token"]) == ("swin", 1, 1, 1, [2, 1])
    assert [p["name"] for p in side["panels"]] == ["attention", "windows"]


# -- the method view (relevance by default) --------------------------------------------------------
def test_method_round_trips_and_defaults_to_relevance(a):
    assert SwinState().method == "relevance" and SwinState().params == {}
    s = SwinState(method="relevance", method_params=(("contrast", 1), ("start_layer", 2), ("target", 3)))
    j = s.to_json()
    assert j["method"] == "relevance" and j["method_params"] == {"contrast": 1, "start_layer": 2, "target": 3}
    assert json.loads(json.dumps(j)) == j and SwinState.from_json(j) == s
    r = s.resolved(a)
    assert SwinState.from_json(json.loads(json.dumps(r.to_json()))) == r and r.resolved(a) == r
    # resolved fills in the defaults; the CLI's text values are converted
    r = SwinState.from_json({"method": "relevance", "method_params": {"target": "2"}}).resolved(a)
    assert r.params == {"target": 2, "contrast": -1, "start_layer": 0}


def test_old_sidecars_without_a_method_or_with_the_clis_rollout_get_relevance(a):
    no_method = {"family": "swin", "stage": 0, "block": 1, "head": 1, "point": [30.0, 40.0], "token": [8, 2]}
    assert SwinState.from_json(no_method).method == "relevance"
    with_rollout = {**no_method, "method": "rollout", "method_params": {"head_fusion": "mean", "discard_ratio": 0.0}}
    s = SwinState.from_json(with_rollout)
    assert (s.method, s.method_params) == ("relevance", ())
    assert s.resolved(a) == SwinState.from_json(no_method).resolved(a)


@pytest.mark.parametrize("settings, message", [
    ({"method": "rollout"}, r"method 'rollout' is not available for Swin models \(they take: attention, .*relevance"),
    ({"method": "no_such"}, "no_such"),
    ({"method": "relevance", "method_params": {"target": 7}}, r"target 7 is not a class of this model \(0..6"),
    ({"method": "relevance", "method_params": {"discard_ratio": 0.5}}, "relevance: method 'relevance' has no "
                                                                        "parameter discard_ratio"),
])
def test_bad_methods_say_what_is_wrong(a, settings, message):
    with pytest.raises(ExportError, match=message):
        get_family("swin").build_figures(a, SwinState.from_json(settings))


def test_carried_over_resets_a_target_the_new_model_does_not_have(a):
    s = SwinState(method_params=(("contrast", 9), ("start_layer", 1), ("target", 3))).carried_over(a)
    assert s.params == {"contrast": -1, "start_layer": 1, "target": 3}  # 7 classes: 3 stays, 9 does not
    s = SwinState(method_params=(("contrast", -1), ("start_layer", 0), ("target", 7))).carried_over(a)
    assert s.params["target"] == -1


def test_method_view_is_the_explained_map_with_the_target_named(a):
    k = int(np.argsort(a.logits)[-2])  # the second class, not the default
    src = get_family("swin").build_figures(a, SwinState(method_params=(("target", k),)))
    v = src.views["method"]
    np.testing.assert_array_equal(v.values, a.explain("relevance", target=k))
    assert v.extent == a.stage_grid(0).extent() and v.values.shape == a.stage_grid(0).shape
    name = a.target_info(k).label
    assert f"target: {name}" in v.title and name in v.description
    assert v.meta["method"] == "relevance" and v.meta["target"] == k
    assert v.meta["target_info"]["index"] == k and v.meta["target_info"]["name"] == a.target_info(k).name
    assert src.settings["method"] == "relevance" and src.settings["method_params"]["target"] == k
    # raw window attention as the method: the selected token's map, on its stage's grid
    src = get_family("swin").build_figures(a, SwinState(stage=1, block=0, head=1, method="attention"))
    s = SwinState.from_json(src.settings)
    np.testing.assert_array_equal(src.views["method"].values, a.attention_map(1, 0, 1, s.token, "from"))
    assert src.views["method"].extent == a.stage_grid(1).extent()


def test_building_the_figure_runs_the_method_only_when_its_view_is_drawn(a, monkeypatch):
    """Every Swin export builds the method view (relevance by default): its backward pass runs only
    when the view is read (exporting --view attention costs no gradient)."""
    import vitviz.core.methods.relevance as rel

    expected = a.explain("relevance", target=2, start_layer=1)
    calls = []
    real = rel.swin
    monkeypatch.setattr(rel, "swin", lambda *args, **kw: calls.append(kw) or real(*args, **kw))
    src = get_family("swin").build_figures(a, SwinState(method_params=(("target", 2), ("start_layer", 1))))
    assert calls == [] and "target: class 2" in src.views["method"].title
    src.views["attention"].values  # other views do not compute it either
    np.testing.assert_array_equal(src.views["method"].values, expected)
    src.views["method"].values
    assert len(calls) == 1 and calls[0]["target"] == 2 and calls[0]["start_layer"] == 1
