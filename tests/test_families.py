"""The family table and method plug-ins: explain() equals the analysis' own maps, view state round
trips (and old sidecar settings still build the same figure), and a toy family written here, a
two-layer transformer of its own, runs through analyze(), the export CLI and a GUI panel."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from vitviz.core.families import Family, families, get_family, register_family, unregister_family
from vitviz.core.methods import Method, Param, get_method, methods, register_method, unregister_method


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import vitviz

    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    path = tmp_path_factory.mktemp("fam") / "img.png"
    img.save(path)
    return vitviz.analyze(str(path), model="test_tiny_vit", weights="random"), path


def test_explain_is_the_analysis_maps(tiny):
    a, _ = tiny
    np.testing.assert_array_equal(a.explain("attention", layer=1, head=2, query="cls"), a.attention_map(1, 2, "cls"))
    np.testing.assert_array_equal(a.explain("attention", layer=-1, head="max", query=(1, 2), direction="to"),
                                  a.attention_map(-1, "max", (1, 2), "to"))
    np.testing.assert_array_equal(a.explain("rollout", head_fusion="min", discard_ratio=0.5, query=(0, 1)),
                                  a.rollout("min", 0.5, (0, 1)))
    np.testing.assert_array_equal(a.explain("rollout"), a.rollout())


def test_method_parameters_are_checked():
    import vitviz

    names = [m.name for m in vitviz.methods()]
    assert names[:2] == ["attention", "rollout"]
    rollout = get_method("rollout")
    assert rollout.resolve({}) == {"head_fusion": "mean", "discard_ratio": 0.0}
    assert rollout.resolve({"discard_ratio": "0.25"})["discard_ratio"] == 0.25
    with pytest.raises(ValueError, match="discard_ratio must be below 1.0"):
        rollout.resolve({"discard_ratio": 1.0})
    with pytest.raises(ValueError, match="head_fusion must be one of mean, max, min"):
        rollout.resolve({"head_fusion": "median"})
    with pytest.raises(ValueError, match="has no parameter speed"):
        rollout.resolve({"speed": 3})
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")
    assert [m.name for m in methods("detr")] and "rollout" not in [m.name for m in methods("detr")]
    assert {f.name for f in families()} >= {"vit", "swin", "detr"}


def test_vit_state_round_trip_and_old_sidecar_settings(tiny):
    from vitviz.core.vit.state import ViTState

    a, _ = tiny
    s = ViTState(layer=1, head=2, query=(1, 2), direction="to", method="rollout",
                 method_params=(("discard_ratio", 0.5), ("head_fusion", "max")), colormap="magma")
    j = s.to_json()
    assert json.loads(json.dumps(j)) == j and j["method_params"] == {"discard_ratio": 0.5, "head_fusion": "max"}
    assert ViTState.from_json(j) == s
    # what vitviz 0.1 wrote into sidecars
    old = {"family": "vit", "layer": 1, "head": 2, "query": [1, 2], "direction": "to", "rollout_fusion": "max",
           "discard_ratio": 0.5, "colormap": "magma", "opacity": 0.6, "grid": True, "model_view": False}
    assert ViTState.from_json(old).resolved(a) == s.resolved(a)
    fam = get_family("vit")
    new_fig, old_fig = fam.build_figures(a, s), fam.build_figures(a, ViTState.from_json(old))
    np.testing.assert_array_equal(new_fig.views["rollout"].values, old_fig.views["rollout"].values)
    np.testing.assert_array_equal(new_fig.views["rollout"].values, a.rollout("max", 0.5, (1, 2)))
    # a new model: a patch outside its grid falls back to the class token, layer to the last one
    far = ViTState(layer=40, query=(50, 50)).carried_over(a)
    assert far.query == "cls" and far.resolved(a).layer == a.num_layers - 1
    from vitviz.core.figures import ExportError

    with pytest.raises(ExportError, match="layer 9 is out of range"):
        ViTState(layer=9).resolved(a)


# -- a toy family, written here from scratch ---------------------------------------------------------
def build_toy(num_classes: int = 3):
    """Two self-attention layers over 4x4 patches of an 32x32 input; returns logits and keeps A."""
    import torch
    from torch import nn

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 16, 8, 8)
            self.qk = nn.ModuleList(nn.Linear(16, 32) for _ in range(2))
            self.head = nn.Linear(16, num_classes)
            self.attn: list = []

        def forward(self, x):  # (n, 3, 32, 32) -> (n, 16 tokens, 16)
            t = self.embed(x).flatten(2).transpose(1, 2)
            self.attn = []
            for qk in self.qk:
                q, k = qk(t).chunk(2, -1)
                a = torch.softmax(q @ k.transpose(1, 2) / 4.0, -1)  # (n, N, N), one head
                self.attn.append(a)
                t = t + a @ t
            return self.head(t.mean(1))

    torch.manual_seed(0)
    return Toy().eval()


@dataclass
class ToyAnalysis:
    image: object
    grid: object
    model_name: str
    weights: str
    trained: bool
    device: str
    attn: np.ndarray  # (layers, N, N)
    notes: list = field(default_factory=list)
    family = "toy"

    def explain(self, method, **params):
        return get_method(method)(self, **params)


def run_toy(loaded, image, attention_dtype=np.float16):
    import torch

    from vitviz.core.geometry import TokenGrid
    from vitviz.core.preprocess import prepare

    x, transform = prepare(image, loaded.preprocess)
    with torch.no_grad():
        loaded.module(x[None])
    attn = np.stack([a[0].numpy() for a in loaded.module.attn]).astype(attention_dtype)
    return ToyAnalysis(image, TokenGrid(4, 4, 8, 8, transform), loaded.name, loaded.weights_label,
                       loaded.trained, loaded.device, attn)


from vitviz.core.state import ViewState, check_layer  # noqa: E402


@dataclass(frozen=True)
class ToyState(ViewState):
    layer: int = -1
    method: str = "received"
    method_params: tuple = ()
    family = "toy"

    def resolved(self, analysis):
        return super().resolved(analysis).replace(layer=check_layer(self.layer, len(analysis.attn)))


def toy_figures(a, state, view_rect=None):
    from vitviz.core.figures import ExportSources, MapView

    s = state.resolved(a)
    values = a.explain(s.method, layer=s.layer, **dict(s.method_params))
    view = MapView(f"Received · layer {s.layer}", "attention each patch receives", np.asarray(a.image),
                   values=values, extent=a.grid.extent(), opacity=s.opacity, view_rect=view_rect,
                   meta={"method": s.method, "layer": s.layer})
    return ExportSources({"received": view}, s.to_json(), colormap=s.colormap, current="received")


def received(a, layer=-1, scale: float = 1.0):
    return scale * a.attn[layer].astype(np.float32).sum(0).reshape(a.grid.rows, a.grid.cols)


def _toy_panel_class():
    from vitviz.gui.panel import Panel
    from vitviz.gui.views.image_view import ImageView

    class ToyPanel(Panel):
        family = "toy"

        def __init__(self, display, parent=None):
            super().__init__(display, parent)
            from PySide6 import QtWidgets

            self.main_view = ImageView("Received")
            self.side_layout = QtWidgets.QVBoxLayout(self)
            self.side_layout.addWidget(self.method_combo)
            self.side_layout.addWidget(self.method_form)
            self.side_layout.addWidget(self.main_view)

        def num_heads(self):
            return 1

        def step_layer(self, delta):
            self.update_state(layer=(self.state.layer + delta) % len(self.analysis.attn))

        def refresh(self):
            self.main_view.set_image(np.asarray(self.analysis.image))
            m = self.analysis.explain(self.state.method, layer=self.state.layer, **dict(self.state.method_params))
            self.main_view.set_map(m, self.analysis.grid.extent(), self.state.colormap, opacity=self.state.opacity)

    return ToyPanel


def __getattr__(name):  # the panel class is built on first use, so importing this file needs no Qt
    if name == "ToyPanel":
        return _toy_panel_class()
    raise AttributeError(name)


@pytest.fixture
def toy_family():
    from vitviz.core.models.registry import ModelSpec, Preprocess, register

    register(ModelSpec("test_toy", "toy", "Toy (tests)", "tests.test_families:build_toy",
                       Preprocess("resize", 32), classes="none", group="Tests"))
    register_family(Family("toy", "Toy transformer", run="tests.test_families:run_toy",
                           state="tests.test_families:ToyState", figures="tests.test_families:toy_figures",
                           panel="tests.test_families:ToyPanel", model_view=False, views=("received",)))
    register_method(Method("received", "Attention received", {"toy": "tests.test_families:received"},
                           params=(Param("scale", 1.0, min=0.0),), context=("layer",)))
    yield
    unregister_family("toy")
    unregister_method("received")


def test_a_toy_family_runs_through_analyze_the_cli_and_a_panel(toy_family, tiny, tmp_path, qapp):
    import vitviz
    from vitviz.__main__ import main

    _, image = tiny
    a = vitviz.analyze(str(image), model="test_toy", weights="random")
    assert isinstance(a, ToyAnalysis) and a.attn.shape == (2, 16, 16)
    np.testing.assert_allclose(a.explain("received", layer=0).sum(), 16, rtol=1e-2)  # rows sum to 1
    assert [m.name for m in get_family("toy").methods()] == ["received"]

    out = tmp_path / "toy.png"
    rc = main(["export", str(image), "--model", "test_toy", "--weights", "random", "--view", "received",
               "--layer", "0", "--out", str(out), "--width", "300"])
    assert rc == 0 and Image.open(out).size[0] == 300
    side = json.loads((tmp_path / "toy.png.json").read_text())
    assert side["request"]["settings"]["family"] == "toy" and side["request"]["settings"]["layer"] == 0
    assert side["panels"][0]["method"] == "received"

    from vitviz.gui.views.controls import DisplayControls

    panel = get_family("toy").panel_type()(DisplayControls(None))
    panel.set_analysis(a)
    m = a.explain("received", layer=-1)
    np.testing.assert_allclose(panel.main_view.levels, (m.min(), m.max()), rtol=1e-6)
    panel.method_form.widget("scale").value = 2.0  # a generated control edits the state and redraws
    assert dict(panel.state.method_params) == {"scale": 2.0}
    np.testing.assert_allclose(panel.main_view.levels, (2 * m.min(), 2 * m.max()), rtol=1e-6)
    panel.toggle_model_view()  # the toy family has no model view: it says so, nothing breaks
    panel.deleteLater()


HEADLESS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("PySide6.QtWidgets", "pyqtgraph", "superqt") or name.startswith("pyqtgraph."):
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, ROOT)
from vitviz.core.models.registry import register
from tests.conftest import TINY_VIT  # registers the tiny test ViT
from vitviz.__main__ import main
rc = main(["export", IMAGE, "--model", "test_tiny_vit", "--weights", "random", "--view", "attention,method",
           "--method", "rollout", "--param", "discard_ratio=0.5", "--out", OUT, "--width", "320"])
assert rc == 0, rc
assert "PySide6.QtWidgets" not in sys.modules
"""


def test_export_cli_runs_where_qt_widgets_cannot_be_imported(tiny, tmp_path):
    from pathlib import Path

    _, image = tiny
    out = tmp_path / "headless.png"
    code = HEADLESS.replace("ROOT", repr(str(Path(__file__).resolve().parents[1]))).replace(
        "IMAGE", repr(str(image))).replace("OUT", repr(str(out)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert res.returncode == 0, res.stderr[-3000:]
    side = json.loads((tmp_path / "headless.png.json").read_text())
    assert side["request"]["settings"]["method"] == "rollout"
    assert side["request"]["settings"]["method_params"] == {"head_fusion": "mean", "discard_ratio": 0.5}
    assert [p["method"] for p in side["panels"]] == ["attention", "rollout"]
