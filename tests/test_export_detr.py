"""DETR exports: detections as vector boxes with labels over the selected object's cross-attention,
heatmap pixels through the colormap, padding never coloured, settings checked, and the CLI's
`--view detections`. A tiny random DETR (tests/test_detr_api.py) with its boxes spread apart."""
import dataclasses
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from vitviz.gui.colormaps import map_values

from .test_detr_api import TINY_DETR  # noqa: F401 (registers test_tiny_detr)

pytestmark = pytest.mark.gui

NS = "{http://www.w3.org/2000/svg}"
N_DETS = 4


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("img") / "street.png"
    Image.fromarray(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def model():
    from vitviz.core.api import get_model

    return get_model("test_tiny_detr", "random", cache=False)


@pytest.fixture(scope="module")
def analysis(model, image_file):
    """The 12 queries' boxes laid out 4 x 3 with different sizes (random DETRs stack them)."""
    import vitviz

    a = vitviz.analyze(str(image_file), model=model)
    i = np.arange(a.num_queries)
    boxes = np.stack([(i % 4 + 0.5) / 4, (i // 4 + 0.5) / 3, 0.12 + 0.01 * (i % 3), 0.16 + 0.02 * (i % 2)], 1)
    a = dataclasses.replace(a, boxes=boxes.astype(np.float32))
    a.image_name = image_file.name
    return a


@pytest.fixture(scope="module")
def threshold(analysis):
    s = np.sort(analysis.best_scores())[::-1]
    assert s[N_DETS - 1] > s[N_DETS]
    return float(s[N_DETS - 1] + s[N_DETS]) / 2


@pytest.fixture
def panel(qapp, analysis):
    from vitviz.gui.views.controls import DisplayControls
    from vitviz.gui.views.detr_panel import DetrPanel

    p = DetrPanel(DisplayControls(None))
    p.set_analysis(analysis)
    yield p
    p.deleteLater()


def _export(panel, a, image_file, path, views, settings=None, **kw):
    from vitviz.gui.export import ExportContext, ExportRequest, export_sources_to_file

    ctx = ExportContext.from_analysis(a, image_path=str(image_file), weights="random")
    return export_sources_to_file(panel.export_sources(settings), ExportRequest(views, **kw), ctx, path)


def _map(meta, x, y, key="rect"):
    """Original pixel -> figure (rect) or PNG (rect_px) coordinates, from the sidecar alone."""
    px0, py0, px1, py1 = meta[key]
    rx0, ry0, rx1, ry1 = meta["region"]
    return px0 + (x - rx0) * (px1 - px0) / (rx1 - rx0), py0 + (y - ry0) * (py1 - py0) / (ry1 - ry0)


def _hex(qcolor):
    return qcolor.name().lower()


def test_svg_has_one_box_and_label_per_detection(panel, analysis, image_file, threshold, tmp_path):
    from vitviz.gui.views.boxes import box_color, score_text

    res = _export(panel, analysis, image_file, tmp_path / "det.svg", ["detections"],
                  {"threshold": threshold, "query": 1, "grid": False})
    dets = analysis.detections(threshold)
    assert len(dets) == N_DETS
    meta = res.metadata["panels"][0]
    assert meta["region"] == [0.0, 0.0, 150.0, 90.0]  # the image, as on screen
    assert [d["query"] for d in meta["detections"]] == [d.query for d in dets]
    assert res.metadata["request"]["settings"]["query"] == f"q{dets[1].query}"  # detection 1 = second best
    root = ET.parse(res.path).getroot()
    outlines = {}  # colour -> rects drawn in it without fill: the boxes
    for g in root.iter(NS + "g"):
        if g.get("fill") == "none" and g.findall(NS + "rect"):
            outlines.setdefault(g.get("stroke"), []).extend(g.findall(NS + "rect"))
    colors = [_hex(box_color(rank)) for rank in range(N_DETS)]
    assert sorted(outlines) == sorted(colors + ["#191919"])  # + the colorbar's frame
    for rank, d in enumerate(dets):
        (rect,) = outlines[colors[rank]]
        x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
        x0, y0 = _map(meta, d.box[0], d.box[1])
        x1, y1 = _map(meta, d.box[2], d.box[3])
        assert (x, y, x + w, y + h) == pytest.approx((x0, y0, x1, y1), abs=0.01)
    # relative placement: box centres keep the image's proportions inside the panel
    px0, py0, px1, py1 = meta["rect"]
    for rank, d in enumerate(dets):
        (rect,) = outlines[colors[rank]]
        cx = (float(rect.get("x")) + float(rect.get("width")) / 2 - px0) / (px1 - px0)
        cy = (float(rect.get("y")) + float(rect.get("height")) / 2 - py0) / (py1 - py0)
        assert (cx, cy) == pytest.approx(((d.box[0] + d.box[2]) / 300, (d.box[1] + d.box[3]) / 180), abs=1e-4)
    # the selected box thick and solid, the others thin and dashed
    strokes = {g.get("stroke"): g for g in root.iter(NS + "g") if g.get("fill") == "none" and g.findall(NS + "rect")}
    assert float(strokes[colors[1]].get("stroke-width")) > float(strokes[colors[0]].get("stroke-width"))
    assert strokes[colors[1]].get("stroke-dasharray") is None and strokes[colors[0]].get("stroke-dasharray")
    labels = [t.text.strip() for t in root.iter(NS + "text") if t.text and t.get("font-size") == "11"]
    assert sorted(labels) == sorted(f"{d.name} {score_text(d.score)}" for d in dets)
    label_boxes = [r for g in root.iter(NS + "g") if g.get("stroke") == "none" and g.get("fill") in colors
                   for r in g.findall(NS + "rect")]
    assert len(label_boxes) == N_DETS


def test_png_heatmap_cell_is_the_colormap_value(panel, analysis, image_file, threshold, tmp_path):
    settings = {"threshold": threshold, "query": 0, "layer": 1, "head": 2, "opacity": 1.0, "grid": False,
                "colormap": "magma"}
    res = _export(panel, analysis, image_file, tmp_path / "det.png", ["detections"], settings, width=700)
    rgb = np.asarray(Image.open(res.path).convert("RGB"))
    meta = res.metadata["panels"][0]
    values = analysis.cross_attention(1, 2, analysis.detections(threshold)[0].query)
    lo, hi = meta["levels"]
    assert (lo, hi) == pytest.approx((np.nanmin(values), np.nanmax(values)))
    expected = map_values("magma", values, lo, hi)[..., :3]
    g = analysis.grid
    boxes = [d.box for d in analysis.detections(threshold)]
    checked = 0
    for r in range(g.rows):
        for c in range(g.cols):
            x0, y0, x1, y1 = g.rect(r, c)
            cx, cy = (x0 + min(x1, 150)) / 2, (y0 + y1) / 2
            if any(b[0] - 3 <= cx <= max(b[2], b[0] + 30) + 3 and b[1] - 3 <= cy <= b[3] + 3 for b in boxes):
                continue  # under a box outline or its label
            px, py = _map(meta, cx, cy, "rect_px")
            assert (rgb[int(py), int(px)] == expected[r, c]).all(), (r, c)
            checked += 1
    assert checked >= 6


def test_padding_is_never_coloured(qapp, model, image_file, tmp_path):
    from vitviz.core.capture.detr_run import run
    from vitviz.gui.views.controls import DisplayControls
    from vitviz.gui.views.detr_panel import DetrPanel

    a = run(model, Image.open(image_file).convert("RGB"), pad_to=96)  # 213 x 128 padded to 288 x 192
    a.image_name = image_file.name
    assert a.pad_mask.any()
    panel = DetrPanel(DisplayControls(None))
    panel.set_analysis(a)
    x0, y0, x1, y1 = a.grid.extent()
    settings = {"threshold": 0.0, "query": 0, "opacity": 1.0, "grid": False}
    res = _export(panel, a, image_file, tmp_path / "pad.png", ["encoder"], settings, width=600,
                  region=[x0, y0, x1, y1], title=False, caption=False)
    rgb = np.asarray(Image.open(res.path).convert("RGB"))
    meta = res.metadata["panels"][0]
    rows, cols = np.nonzero(a.pad_mask)
    for r, c in zip(rows, cols):
        cx0, cy0, cx1, cy1 = a.grid.rect(r, c)
        px, py = _map(meta, (cx0 + cx1) / 2, (cy0 + cy1) / 2, "rect_px")
        assert tuple(rgb[int(py), int(px)]) == (228, 228, 228)  # the light theme's "no image"
    # by default the figure shows the image only, and the grid's tiles the cells holding image
    sources = panel.export_sources(settings)
    assert sources.views["grid"].maps.shape[2:] == a.valid_shape
    assert not np.isnan(sources.views["grid"].maps).any()
    res = _export(panel, a, image_file, tmp_path / "pad.svg", ["detections"], settings)
    assert res.metadata["panels"][0]["region"] == [0.0, 0.0, 150.0, 90.0]
    panel.deleteLater()


def test_settings_resolve_reproduce_and_report_bad_values(panel, analysis, threshold):
    from vitviz.gui.export import ExportError

    dets = analysis.detections(threshold)
    s = panel.export_sources({"threshold": threshold, "query": 2, "layer": -1, "head": "max"})
    assert s.settings["query"] == f"q{dets[2].query}" and s.settings["detection"] == 2
    assert s.settings["layer"] == 2 and s.settings["focus"] == "query"
    assert list(s.views)[:4] == ["detections", "attention", "encoder", "grid"]
    assert s.views["grid"].maps.shape[:2] == (analysis.num_layers, analysis.num_heads)
    np.testing.assert_array_equal(s.views["attention"].values, analysis.cross_attention(2, "max", dets[2].query))
    again = panel.export_sources(json.loads(json.dumps(s.settings)))  # as from a sidecar
    assert again.settings == s.settings
    np.testing.assert_array_equal(again.views["attention"].values, s.views["attention"].values)
    # qN names any query, even below the threshold; ROW,COL probes the encoder
    low = int(np.argmin(analysis.best_scores()))
    assert panel.export_sources({"threshold": threshold, "query": f"q{low}"}).settings["detection"] is None
    enc = panel.export_sources({"query": [1, 3], "layer": 0, "direction": "to"})
    assert enc.settings["focus"] == "point" and enc.settings["cell"] == [1, 3]
    np.testing.assert_array_equal(enc.views["attention"].values,
                                  analysis.encoder_attention_map(0, "mean", direction="to", cell=(1, 3)))
    assert enc.views["grid"].row_name == "encoder layer"
    pt = panel.export_sources({"point": [10.0, 80.0]})
    assert pt.settings["cell"] == list(analysis.cell_at(10.0, 80.0))
    bad = [({"threshold": 1.5}, "threshold"), ({"layer": 3}, "layer 3 is out of range"),
           ({"head": 4}, "head 4 is out of range"), ({"head": "median"}, "head must be"),
           ({"threshold": threshold, "query": N_DETS}, f"detection {N_DETS}"),
           ({"query": "q12"}, "12 object queries"), ({"point": [400, 10]}, "is not on the image"),
           ({"query": [9, 0]}, "outside the 4x7 feature map"), ({"colormap": "nope"}, "unknown colormap"),
           ({"query": "left"}, "query must be")]
    for settings, message in bad:
        with pytest.raises(ExportError, match=message):
            panel.export_sources(settings)


def test_cli_exports_detections(qapp, tmp_path, capsys, image_file):
    from vitviz.cli.export import main

    out = tmp_path / "out"
    args = [str(image_file), "--model", "test_tiny_detr", "--weights", "random", "--view", "detections",
            "--format", "svg", "--out", str(out)]
    assert main(args + ["--threshold", "0", "--query", "q5", "--no-grid"]) == 0
    side = json.loads((out / "street_detections.svg.json").read_text())
    panel = side["panels"][0]
    assert side["model"]["family"] == "detr" and len(panel["detections"]) == 12 and panel["query"] == 5
    assert side["request"]["settings"]["threshold"] == 0.0
    root = ET.parse(out / "street_detections.svg").getroot()
    boxes = [r for g in root.iter(NS + "g") if g.get("fill") == "none" and g.get("stroke") != "#191919"
             for r in g.findall(NS + "rect")]
    assert len(boxes) == 12
    capsys.readouterr()
    assert main(args + ["--query", "0"]) == 1  # random weights: nothing scores above 0.7
    assert "detection 0: 0 object(s) score above the threshold" in capsys.readouterr().err


# Sidecars written by vitviz 0.1 (the widget-state DETR panel; `vitviz export street.png --model
# test_tiny_detr --weights random ...` on this file's image): their settings as they were written,
# and what their panels showed. A re-run today must show the same.
OLD_REQUEST = {"format": "png", "width": None, "dpi": 192.0, "aspect": "auto", "theme": "light", "title": True,
               "colorbar": True, "caption": True, "region": None, "rows": None, "cols": None,
               "tile_scale": "tile", "shared_scale": True}
OLD_SIDECARS = [
    ({"views": ["detections", "attention"],
      "settings": {"family": "detr", "threshold": 0.0, "query": "q5",
                   "detections": [2, 4, 11, 5, 9, 10, 0, 8, 6, 3, 1, 7], "point": [75.0, 45.0], "cell": [2, 3],
                   "layer": 1, "decoder_layer": 1, "encoder_layer": 1, "head": 2, "direction": "from",
                   "focus": "query", "colormap": "viridis", "opacity": 0.6, "overlay": "blend", "grid": True,
                   "detection": 3}},
     [{"name": "detections", "title": "Detections · cross-attention of frisbee (query 5) · layer 1 · head 2",
       "levels": [0.0226898193359375, 0.052947998046875], "method": "detections + decoder cross-attention",
       "threshold": 0.0, "layer": 1, "head": 2, "query": 5},
      {"name": "attention", "title": "Cross-attention · frisbee (query 5) · layer 1 · head 2",
       "levels": [0.0226898193359375, 0.052947998046875], "method": "decoder cross-attention", "layer": 1,
       "head": 2, "query": 5}]),
    ({"views": ["encoder", "head:1"],
      "settings": {"family": "detr", "threshold": 0.05, "query": None, "detections": [],
                   "point": [78.87323943661973, 56.25], "cell": [2, 3], "layer": 2, "decoder_layer": 2,
                   "encoder_layer": 1, "head": "mean", "direction": "to", "focus": "point", "colormap": "viridis",
                   "opacity": 0.6, "overlay": "blend", "grid": True, "detection": None}},
     [{"name": "encoder", "title": "Encoder self-attention to cell (2, 3) · layer 1 · heads mean",
       "levels": [0.028167724609375, 0.04183197021484375], "method": "encoder self-attention", "layer": 1,
       "head": "mean", "cell": [2, 3], "point": [78.87323943661973, 56.25], "direction": "to"},
      {"name": "head:1", "title": "Encoder layer 1 · head 1", "levels": [0.028167724609375, 0.04183197021484375],
       "method": "encoder self-attention", "layer": 1, "head": 1, "cell": [2, 3],
       "point": [78.87323943661973, 56.25], "direction": "to"}]),
]


@pytest.mark.parametrize("request_part, panels", OLD_SIDECARS, ids=["object", "encoder-cell"])
def test_old_sidecars_rerun_to_the_same_figure(qapp, tmp_path, capsys, image_file, request_part, panels):
    from vitviz.cli.export import main

    side = tmp_path / "old.png.json"
    side.write_text(json.dumps({
        "request": {**OLD_REQUEST, **request_part}, "image": {"path": str(image_file), "name": image_file.name},
        "model": {"name": "test_tiny_detr", "family": "detr", "weights": "random", "device": "cpu"},
        "output": {"file": "old.png"}}))
    assert main(["--from-sidecar", str(side), "--out", str(tmp_path / "again.png")]) == 0
    new = json.loads((tmp_path / "again.png.json").read_text())
    assert len(new["panels"]) == len(panels)
    for old, now in zip(panels, new["panels"]):
        for key, value in old.items():
            if key == "levels":
                assert now[key] == pytest.approx(value, rel=1e-6), key
            else:
                assert now[key] == value, key
    settings = new["request"]["settings"]
    for key, value in request_part["settings"].items():  # recorded again as they were
        assert settings[key] == value, key


HEADLESS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("PySide6.QtWidgets", "pyqtgraph", "superqt") or name.startswith("pyqtgraph."):
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, ROOT)
from tests.test_detr_api import TINY_DETR  # registers the tiny test DETR
from vitviz.__main__ import main
rc = main(["export", IMAGE, "--model", "test_tiny_detr", "--weights", "random", "--view", "detections,encoder",
           "--threshold", "0", "--query", "1", "--out", OUT, "--width", "400"])
assert rc == 0, rc
assert "PySide6.QtWidgets" not in sys.modules
"""


@pytest.mark.slow  # a fresh interpreter imports torch and Qt: ~20 s on 2 shared cores
def test_detr_export_runs_where_qt_widgets_cannot_be_imported(tmp_path, image_file):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "headless.png"
    code = HEADLESS.replace("ROOT", repr(str(Path(__file__).resolve().parents[1]))).replace(
        "IMAGE", repr(str(image_file))).replace("OUT", repr(str(out)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert res.returncode == 0, res.stderr[-3000:]
    side = json.loads((tmp_path / "headless.png.json").read_text())
    assert side["request"]["settings"]["detection"] == 1
    assert [p["name"] for p in side["panels"]] == ["detections", "encoder"]
    assert len(side["panels"][0]["detections"]) == 12
