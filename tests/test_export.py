"""Exports for slides: pixels through the colormap, vector SVG/PDF, sidecars that reproduce the
file, atomic writes, the dialog and clipboard, and the headless CLI."""
import base64
import errno
import io
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from vitviz.gui.colormaps import lookup_table, map_values

pytestmark = pytest.mark.gui

MODEL = ["--model", "test_tiny_vit", "--weights", "random"]


def _random_png(path, size=(120, 90), seed=3):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    return _random_png(tmp_path_factory.mktemp("img") / "wide.png")


@pytest.fixture(scope="module")
def analysis(image_file):
    import vitviz

    a = vitviz.analyze(str(image_file), model="test_tiny_vit", weights="random")
    return a


@pytest.fixture
def panel(qapp, analysis):
    from vitviz.gui.views.controls import DisplayControls
    from vitviz.gui.views.vit_panel import ViTPanel

    p = ViTPanel(DisplayControls(None))
    p.set_analysis(analysis)
    yield p
    p.deleteLater()


def _export(panel, analysis, image_file, path, views, settings=None, **kw):
    from vitviz.gui.export import ExportContext, ExportRequest, export_sources_to_file

    ctx = ExportContext.from_analysis(analysis, image_path=str(image_file), weights="random")
    req = ExportRequest(views, **kw)
    return export_sources_to_file(panel.export_sources(settings), req, ctx, path)


def _to_px(panel_meta, x, y):
    """Original-image pixel -> PNG pixel, from the sidecar alone."""
    px0, py0, px1, py1 = panel_meta["rect_px"]
    rx0, ry0, rx1, ry1 = panel_meta["region"]
    return (int(px0 + (x - rx0) * (px1 - px0) / (rx1 - rx0)),
            int(py0 + (y - ry0) * (py1 - py0) / (ry1 - ry0)))


def test_png_pixels_are_the_attention_values_through_the_colormap(panel, analysis, image_file, tmp_path):
    settings = {"layer": 1, "head": 2, "query": "cls", "opacity": 1.0, "grid": False, "colormap": "magma"}
    res = _export(panel, analysis, image_file, tmp_path / "att.png", ["attention"], settings, width=900)
    png = Image.open(res.path)
    assert png.size[0] == 900
    rgb = np.asarray(png.convert("RGB"))
    meta = res.metadata
    expected = analysis.attention_map(1, 2, "cls")
    lo, hi = float(expected.min()), float(expected.max())
    assert meta["panels"][0]["levels"] == pytest.approx([lo, hi])
    g = analysis.grid
    for r in range(g.rows):
        for c in range(g.cols):
            x0, y0, x1, y1 = g.rect(r, c)
            want = map_values("magma", expected[r, c], lo, hi)[:3].astype(int)
            # the centre and points near the cell's edges: nearest-neighbour, never blurred
            for fx, fy in ((0.5, 0.5), (0.12, 0.12), (0.88, 0.88), (0.12, 0.88)):
                px, py = _to_px(meta["panels"][0], x0 + fx * (x1 - x0), y0 + fy * (y1 - y0))
                got = rgb[py, px].astype(int)
                assert np.abs(got - want).max() <= 1, (r, c, fx, fy, got, want)
    # the same record is embedded in the PNG (all but the output file's own hash) and in the sidecar
    embedded = json.loads(png.text["vitviz"])
    side = json.loads(open(res.sidecar).read())
    assert embedded == {k: v for k, v in side.items() if k != "output"}
    assert side["image"]["path"] == str(image_file) and side["image"]["sha256"]
    assert side["model"] == {**side["model"], "name": "test_tiny_vit", "weights": "random", "trained": False}
    assert side["request"]["settings"]["layer"] == 1 and side["request"]["settings"]["head"] == 2
    assert side["colormap"] == "magma" and side["scale"]["mode"] == "map"
    assert side["vitviz_version"]
    assert "UNTRAINED" in side["caption"] and "layer 1, head 2" in side["caption"]
    assert round(png.info["dpi"][0]) == round(96 * 900 / side["figure"]["width"])


def _groups(root, ns="{http://www.w3.org/2000/svg}"):
    return [g for g in root.iter(ns + "g")]


def test_svg_is_vector_with_the_rasters_embedded(panel, analysis, image_file, tmp_path):
    ns = "{http://www.w3.org/2000/svg}"
    settings = {"query": [1, 2], "grid": True, "opacity": 1.0}
    res = _export(panel, analysis, image_file, tmp_path / "att.svg", ["attention"], settings)
    root = ET.parse(res.path).getroot()
    g = analysis.grid
    grid_groups = [e for e in _groups(root) if e.get("stroke") == "#ffffff" and e.findall(ns + "polyline")]
    assert sum(len(e.findall(ns + "polyline")) for e in grid_groups) == g.rows + 1 + g.cols + 1
    sel = [r for e in _groups(root) if e.get("stroke") == "#ff3b30" for r in e.findall(ns + "rect")]
    assert len(sel) == 1
    (px0, py0, px1, py1), (rx0, _, rx1, _) = res.metadata["panels"][0]["rect"], res.metadata["panels"][0]["region"]
    x0, y0, x1, y1 = g.rect(1, 2)
    assert float(sel[0].get("width")) == pytest.approx((x1 - x0) * (px1 - px0) / (rx1 - rx0), rel=1e-3)
    images = root.findall(f".//{ns}image")
    hrefs = [im.get("{http://www.w3.org/1999/xlink}href") for im in images]
    assert all(h.startswith("data:image/png;base64,") for h in hrefs)
    photo = Image.open(io.BytesIO(base64.b64decode(hrefs[0].split(",", 1)[1])))
    assert photo.size == analysis.image.size  # the photo at full resolution
    heat = [im for im in images if im.get("image-rendering") == "optimizeSpeed"][0]
    arr = np.asarray(Image.open(io.BytesIO(base64.b64decode(heat.get("{http://www.w3.org/1999/xlink}href")
                                                            .split(",", 1)[1]))).convert("RGBA"))
    k = arr.shape[1] // g.cols
    assert arr.shape[:2] == (g.rows * k, g.cols * k) and k >= 64  # nearest-neighbour blocks
    expected = analysis.attention_map(panel.layer, panel.head, (1, 2))
    lo, hi = float(expected.min()), float(expected.max())
    blocks = arr.reshape(g.rows, k, g.cols, k, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert (blocks[:, 0, :, 0, :3] == map_values(panel.display.colormap, expected, lo, hi)[..., :3]).all()
    texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
    assert "wide.png" in texts and "test_tiny_vit" in texts
    assert json.loads(root.find(ns + "desc").text)["request"]["views"] == ["attention"]


def test_pdf_is_a_pdf_with_images_and_the_right_page(panel, analysis, image_file, tmp_path):
    res = _export(panel, analysis, image_file, tmp_path / "cmp.pdf", ["attention", "rollout"],
                  {"opacity": 1.0, "grid": False})
    data = open(res.path, "rb").read()
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    assert data.count(b"/Subtype /Image") >= 4  # photo and heatmap per panel (+ colorbar)
    assert b"/Type /Page" in data and b"xref" in data
    w, h = res.metadata["figure"]["width"], res.metadata["figure"]["height"]
    assert f"/MediaBox [0 0 {w * 0.75:.6f} {h * 0.75:.6f}]".encode() in data
    if shutil.which("pdftoppm") is None:
        return
    subprocess.run(["pdftoppm", "-r", "96", "-png", "-singlefile", res.path, str(tmp_path / "page")], check=True)
    page = np.asarray(Image.open(tmp_path / "page.png").convert("RGB"))
    assert page.shape[:2] == (round(h), round(w))
    a = res.metadata["panels"][1]  # rollout: patch centres through the shared scale
    expected = analysis.rollout("mean", 0.0, "cls")
    lo, hi = res.metadata["scale"]["levels"]
    for r, c in ((0, 0), (2, 3)):
        x0, y0, x1, y1 = analysis.grid.rect(r, c)
        px = a["rect"][0] + ((x0 + x1) / 2 - a["region"][0]) * (a["rect"][2] - a["rect"][0]) / (a["region"][2] - a["region"][0])
        py = a["rect"][1] + ((y0 + y1) / 2 - a["region"][1]) * (a["rect"][3] - a["rect"][1]) / (a["region"][3] - a["region"][1])
        want = map_values("viridis", expected[r, c], lo, hi)[:3].astype(int)
        assert np.abs(page[int(py), int(px)].astype(int) - want).max() <= 3


def test_comparison_shares_one_scale(panel, analysis, image_file, tmp_path):
    res = _export(panel, analysis, image_file, tmp_path / "cmp.png", ["attention", "rollout", "head:1"],
                  {"layer": 2, "head": "max"}, width=1200)
    maps = [analysis.attention_map(2, "max", "cls"), analysis.rollout("mean", 0.0, "cls"),
            analysis.attention_map(2, 1, "cls")]
    lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
    meta = res.metadata
    assert meta["scale"]["mode"] == "shared" and meta["scale"]["levels"] == pytest.approx([lo, hi])
    assert [p["name"] for p in meta["panels"]] == ["attention", "rollout", "head:1"]
    assert all(p["levels"] == meta["scale"]["levels"] for p in meta["panels"])
    assert [p["method"] for p in meta["panels"]] == ["attention", "rollout", "attention"]
    assert "one scale shared by all panels" in meta["caption"]


@pytest.mark.parametrize("tile_scale", ["tile", "shared"])
def test_grid_figure_layers_heads_slide_aspect(panel, analysis, image_file, tmp_path, tile_scale):
    res = _export(panel, analysis, image_file, tmp_path / "grid.png", ["grid"], {"query": [2, 1]},
                  rows=[0, 2], cols=[1, 3], aspect="16:9", tile_scale=tile_scale, width=1600)
    png = np.asarray(Image.open(res.path).convert("RGB"))
    assert png.shape[1] == 1600 and abs(png.shape[0] - 900) <= 1
    p = res.metadata["panels"][0]
    assert (p["rows"], p["cols"], p["tile_scale"]) == ([0, 2], [1, 3], tile_scale)
    maps = analysis.head_maps((2, 1))[np.ix_([0, 2], [1, 3])]
    s = 1600 / res.metadata["figure"]["width"]
    (ox, oy), (tw, th), gap = p["origin"], p["tile"], p["gap"]
    r, c = maps.shape[2:]
    for i in range(2):
        for j in range(2):
            tile = maps[i, j]
            lo, hi = (tile.min(), tile.max()) if tile_scale == "tile" else (maps.min(), maps.max())
            for tr, tc in ((0, 0), (r - 1, c - 1), (1, 2)):
                x = (ox + j * (tw + gap) + (tc + 0.5) * tw / c) * s
                y = (oy + i * (th + gap) + (tr + 0.5) * th / r) * s
                want = map_values("viridis", tile[tr, tc], lo, hi)[:3].astype(int)
                assert np.abs(png[int(y), int(x)].astype(int) - want).max() <= 1
    caption = res.metadata["caption"]
    assert ("its own min–max" in caption) == (tile_scale == "tile")
    assert "layers L0, L2" in caption and "heads H1, H3" in caption


def test_atomic_write_full_disk_leaves_nothing_and_keeps_the_old_file(panel, analysis, image_file, tmp_path,
                                                                    monkeypatch):
    from vitviz.gui import export
    from vitviz.gui.export import ExportError

    target = tmp_path / "fig.png"
    target.write_bytes(b"old figure")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export.os, "fsync", full)
    with pytest.raises(ExportError) as err:
        _export(panel, analysis, image_file, target, ["attention"], width=300)
    assert str(target) in str(err.value) and "disk is full" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["fig.png"] and target.read_bytes() == b"old figure"


def test_unwritable_paths_give_a_clear_message(panel, analysis, image_file, tmp_path):
    from vitviz.gui.export import ExportError

    (tmp_path / "afile").write_text("x")
    for path, reason in ((tmp_path / "missing" / "f.png", "No such file or directory"),
                         (tmp_path / "afile" / "f.svg", "Not a directory")):
        with pytest.raises(ExportError) as err:
            _export(panel, analysis, image_file, path, ["attention"], width=300)
        assert str(path) in str(err.value) and reason in str(err.value)
    # the sidecar cannot be placed (a folder is in the way): the figure is not left behind either
    (tmp_path / "fig.png.json").mkdir()
    with pytest.raises(ExportError, match="fig.png.json"):
        _export(panel, analysis, image_file, tmp_path / "fig.png", ["attention"], width=300)
    assert sorted(os.listdir(tmp_path)) == ["afile", "fig.png.json"]
    with pytest.raises(ExportError, match="unknown format"):
        _export(panel, analysis, image_file, tmp_path / "fig.bmp", ["attention"])


def test_bad_view_settings_are_reported(panel, analysis, image_file, tmp_path):
    from vitviz.gui.export import ExportError

    for settings, msg in (({"layer": 9}, "layer 9 is out of range"), ({"head": 7}, "head 7 is out of range"),
                          ({"query": [9, 0]}, "query")):
        with pytest.raises(ExportError, match=msg):
            _export(panel, analysis, image_file, tmp_path / "x.png", ["attention"], settings)
    with pytest.raises(ExportError, match="not available"):
        _export(panel, analysis, image_file, tmp_path / "x.png", ["windows"])
    assert not list(tmp_path.iterdir())


# -- the window: dialog, Ctrl+E, Ctrl+C, and a GUI export re-run headless from its sidecar -----------
def test_window_export_and_rerun_from_sidecar_is_identical(qtbot, tmp_path, image_file, monkeypatch):
    from PySide6 import QtCore, QtGui, QtWidgets

    from vitviz.cli.export import main as cli
    from vitviz.gui.export_dialog import ExportDialog, copy_view, export_from_dialog

    from .gui_helpers import make_window, open_and_wait

    win = make_window(qtbot, tmp_path)
    open_and_wait(qtbot, win, image_file)
    panel = win.panels["vit"]
    panel.select_query((1, 1))
    panel.step_head(3)
    shortcuts = {a.shortcut().toString(): a.text() for a in win.actions()}
    assert "Export" in shortcuts["Ctrl+E"] and "Copy" in shortcuts["Ctrl+C"]

    dlg = ExportDialog(panel.export_sources(), "grid", str(tmp_path / "fig.png"), win)
    qtbot.addWidget(dlg)
    dlg.rows_edit.setText("0-1")
    dlg.tile_scale.setCurrentIndex(1)
    dlg.aspect_combo.setCurrentIndex(1)
    dlg.width_spin.setValue(1000)
    req = dlg.request()
    assert (req.views, req.rows, req.cols, req.tile_scale, req.aspect) == (["grid"], [0, 1], None, "shared", "16:9")
    dlg.rows_edit.setText("0-7")
    with pytest.raises(ValueError, match="out of range"):
        dlg.request()
    dlg.rows_edit.setText("0-1")
    path = export_from_dialog(win, dlg)
    assert path == str(tmp_path / "fig.png") and os.path.exists(path + ".json")

    rerun = tmp_path / "again.png"
    assert cli(["--from-sidecar", path + ".json", "--out", str(rerun)]) == 0
    assert rerun.read_bytes() == open(path, "rb").read()

    dlg.format_combo.setCurrentIndex(dlg.format_combo.findData("svg"))
    assert dlg.path().endswith("fig.svg")

    QtWidgets.QApplication.clipboard().clear()
    assert copy_view(win)
    img: QtGui.QImage = QtWidgets.QApplication.clipboard().image()
    assert not img.isNull() and img.width() > 500

    def fill_in_and_save():  # Ctrl+E's dialog, driven while it runs
        win.export_dialog.kind_combo.setCurrentIndex(1)
        win.export_dialog.path_edit.setText(str(tmp_path / "side.pdf"))
        win.export_dialog._on_accept()

    QtCore.QTimer.singleShot(100, fill_in_and_save)
    [a for a in win.actions() if a.shortcut().toString() == "Ctrl+E"][0].trigger()
    side = json.loads((tmp_path / "side.pdf.json").read_text())
    assert [p["name"] for p in side["panels"]] == ["attention", "rollout"] and side["request"]["format"] == "pdf"


# -- the command line ------------------------------------------------------------------------------
def test_cli_folder_with_a_bad_image_exports_the_rest(qapp, tmp_path, capsys):
    from vitviz.__main__ import main

    folder = tmp_path / "in"
    folder.mkdir()
    _random_png(folder / "a.png", (80, 64), 1)
    _random_png(folder / "b.jpg", (64, 96), 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image, not considered")
    out = tmp_path / "out"
    rc = main(["export", str(folder), *MODEL, "--view", "rollout", "--query", "1,1", "--width", "400",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(out)) == ["a_rollout.png", "a_rollout.png.json", "b_rollout.png", "b_rollout.png.json"]
    assert "[3/3]" in err and "broken.png" in err and "Exported 2 of 3" in err
    side = json.loads((out / "b_rollout.png.json").read_text())
    assert side["request"]["settings"]["query"] == [1, 1] and side["panels"][0]["method"] == "rollout"
    assert Image.open(out / "a_rollout.png").text["vitviz"]


def test_cli_single_file_formats_and_unavailable_views(qapp, tmp_path, capsys, image_file):
    from vitviz.cli.export import main

    out = tmp_path / "grid.pdf"
    assert main([str(image_file), *MODEL, "--view", "grid", "--layers", "0-1", "--heads", "0,2",
                 "--aspect", "16:9", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF") and json.loads((tmp_path / "grid.pdf.json").read_text())["panels"][0]["cols"] == [0, 2]
    assert main([str(image_file), *MODEL, "--view", "attention", "--format", "svg", "--layer", "0",
                 "--head", "1", "--colormap", "turbo", "--out", str(tmp_path)]) == 0
    side = json.loads((tmp_path / "wide_attention.svg.json").read_text())
    assert side["colormap"] == "turbo" and side["panels"][0]["head"] == 1
    capsys.readouterr()
    assert main([str(image_file), *MODEL, "--view", "windows", "--out", str(tmp_path / "w")]) == 1
    assert "not available for this model" in capsys.readouterr().err
    assert not list((tmp_path / "w").iterdir())
    assert main([str(image_file), *MODEL, "--layer", "7", "--out", str(tmp_path / "w")]) == 1
    assert "layer 7 is out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(image_file), str(image_file), "--out", str(tmp_path / "one.png")])
    assert exit_.value.code == 2


def test_colorbar_matches_the_lookup_table(panel, analysis, image_file, tmp_path):
    from vitviz.gui.export_figures import nice_ticks

    assert nice_ticks(0.0415, 0.0939) == pytest.approx([0.05, 0.06, 0.07, 0.08, 0.09])
    res = _export(panel, analysis, image_file, tmp_path / "a.png", ["attention"], {"colormap": "viridis"},
                  width=800, caption=False, title=False)
    png = np.asarray(Image.open(res.path).convert("RGB"))
    top = png[:, int(res.metadata["panels"][0]["rect_px"][2]) + 10:]
    lut = lookup_table("viridis")[:, :3].astype(int)
    ys = np.where((np.abs(top.astype(int) - lut[-1]).max(axis=2) <= 2).any(axis=1))[0]
    assert ys.size  # the top colour of the scale is drawn beside the panel


def test_cli_method_without_view_exports_the_method_map(qapp, tmp_path, image_file):
    """`--method relevance` alone draws the relevance map (the default view follows --method)."""
    from vitviz.__main__ import main

    out = tmp_path / "rel.png"
    assert main(["export", str(image_file), *MODEL, "--method", "rollout", "--out", str(out)]) == 0
    side = json.loads((tmp_path / "rel.png.json").read_text())
    assert [p["name"] for p in side["panels"]] == ["method"] and "Rollout" in side["panels"][0]["title"]
    plain = tmp_path / "att.png"
    assert main(["export", str(image_file), *MODEL, "--out", str(plain)]) == 0
    assert [p["name"] for p in json.loads((tmp_path / "att.png.json").read_text())["panels"]] == ["attention"]
