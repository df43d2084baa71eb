"""DETR through analyze(): registry, geometry, boxes in original pixels, maps vs captured tensors,
padding, pretrained weights from the hub cache, bad checkpoints.

A tiny random DETR (ResNet-18, d=64, 2 encoder + 3 decoder layers, 12 queries, shorter side 128)
does most of the work; one DETR-R50 runs at a small input (shorter side 320) through a test spec.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import vitviz
from vitviz.core.analysis.detr import DetrAnalysis, Detection
from vitviz.core.geometry import InputTransform, TokenGrid
from vitviz.core.models.detr_specs import DETR_LABELS, detr_spec
from vitviz.core.models.registry import Preprocess, get_spec, register

TINY_DETR = detr_spec("test_tiny_detr", "Tiny DETR (tests)", Preprocess("resize_short", 128, max_size=213),
                      group="Tests", backbone="resnet18", d_model=64, nheads=4, enc_layers=2, dec_layers=3,
                      dim_feedforward=128, num_queries=12)
# the real DETR-R50 architecture at a smaller input, to keep the test suite fast
R50_SMALL = detr_spec("test_detr_r50_small", "DETR-R50 at 320 (tests)", Preprocess("resize_short", 320, max_size=533),
                      group="Tests", preset="detr_resnet50")
register(TINY_DETR)
register(R50_SMALL)


def random_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def tiny():
    from vitviz.core.api import get_model

    return get_model("test_tiny_detr", "random", cache=False)


@pytest.fixture(scope="module")
def tiny_analysis(tiny):
    # 150 x 90 -> 213 x 128 input -> a 4 x 7 feature map: not square, so a transpose would show
    return vitviz.analyze(random_image(150, 90), model=tiny)


@pytest.fixture(scope="module")
def padded_analysis(tiny):
    from vitviz.core.capture.detr_run import run

    return run(tiny, random_image(150, 90, seed=1), pad_to=96)  # 213 x 128 padded to 288 x 192


# -- registry -------------------------------------------------------------------------------------

def test_registry_lists_the_four_detr_models():
    for name in ("detr_resnet50", "detr_resnet101", "detr_resnet50_dc5", "detr_resnet101_dc5"):
        spec = get_spec(name)
        assert spec.family == "detr" and spec.group == "DETR (COCO)"
        assert spec.preprocess == Preprocess("resize_short", 800, max_size=1333)
        assert spec.builder_kwargs == {"preset": name}
        assert spec.label == DETR_LABELS[name]


def test_detr_specs_import_without_torch():
    code = ("import sys, vitviz.core.models.detr_specs as d; from vitviz.core.models.registry import all_specs\n"
            "assert [s for s in all_specs() if s.family == 'detr']\n"
            "assert 'torch' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# -- the analysis ---------------------------------------------------------------------------------

def test_tiny_analysis_shapes_and_metadata(tiny_analysis):
    a = tiny_analysis
    assert isinstance(a, DetrAnalysis) and a.family == "detr"
    assert (a.num_encoder_layers, a.num_layers, a.num_heads, a.num_queries) == (2, 3, 4, 12)
    assert a.model_input.shape == (3, 128, 213)
    assert a.feature_shape == (4, 7) == (math.ceil(128 / 32), math.ceil(213 / 32))
    assert a.stride == 32 and (a.grid.cell_w, a.grid.cell_h) == (32, 32)
    assert not a.pad_mask.any() and a.valid_shape == (4, 7)
    assert a.head_maps(3).shape == (3, 4, 4, 7)
    assert a.encoder_head_maps(cell=(1, 2)).shape == (2, 4, 4, 7)
    assert a.input_image().shape == (128, 213, 3) and a.input_image().dtype == np.uint8
    assert a.model_name == "test_tiny_detr" and a.weights == "random" and not a.trained
    assert a.device == "cpu" and a.class_names[1] == "person"
    assert {"preprocess", "forward", "total"} <= set(a.timings)


def test_geometry_uses_detr_rounding_not_torchvision():
    """8:1 at short 128 / max 213: DETR rounds to 216 x 27, torchvision would give 213 x 26."""
    from vitviz.core.geometry import resized_size

    assert resized_size(400, 50, 128, 213) == (213, 26)
    a = vitviz.analyze(random_image(400, 50), model="test_tiny_detr", weights="random")
    t = a.grid.transform
    assert a.model_input.shape[1:] == (27, 216) == (t.input_h, t.input_w)
    assert (t.scale_x, t.scale_y) == (216 / 400, 27 / 50)
    assert a.feature_shape == (1, 7)
    # every original pixel falls in a cell, the last column included
    assert a.cell_at(399.9, 49.9) == (0, 6)
    assert a.cell_at(400, 10) is None and a.cell_at(-0.1, 10) is None
    x0, y0, x1, y1 = a.grid.rect(0, 6)
    assert math.isclose(x0, 6 * 32 / t.scale_x) and math.isclose(x1, 7 * 32 / t.scale_x)


def test_cell_at_matches_cell_rects(tiny_analysis):
    a = tiny_analysis
    for r in range(a.grid.rows):
        for c in range(a.grid.cols):
            x0, y0, x1, y1 = a.grid.rect(r, c)
            x, y = min((x0 + x1) / 2, a.image.width - 0.5), min((y0 + y1) / 2, a.image.height - 0.5)
            assert a.cell_at(x, y) == (r, c)


# -- boxes ------------------------------------------------------------------------------------------

def fake_analysis(w: int, h: int, boxes, logits, class_names=None) -> DetrAnalysis:
    """A DetrAnalysis around hand-made predictions (attention is uniform filler)."""
    q = len(boxes)
    t = InputTransform(w, h, 64, 64, 64 / w, 64 / h)
    grid = TokenGrid(2, 2, 32.0, 32.0, t)
    return DetrAnalysis(
        image=Image.new("RGB", (w, h)), grid=grid, model_name="fake", weights="random", trained=False,
        device="cpu", model_input=np.zeros((3, 64, 64), np.float32), logits=np.asarray(logits, np.float32),
        boxes=np.asarray(boxes, np.float32), enc_attn=np.full((1, 1, 4, 4), 0.25, np.float16),
        dec_self=np.full((1, 1, q, q), 1 / q, np.float16), dec_cross=np.full((1, 1, q, 4), 0.25, np.float16),
        pad_mask=np.zeros((2, 2), bool), class_names=class_names)


@pytest.mark.parametrize("w, h, box, expected", [
    (200, 100, (0.5, 0.5, 0.2, 0.4), (80, 30, 120, 70)),  # wide 2:1
    (90, 300, (0.25, 0.75, 0.5, 0.5), (0, 150, 45, 300)),  # tall 3:10
    (640, 640, (0.1, 0.2, 0.2, 0.2), (0, 64, 128, 192)),  # square
    (800, 100, (0.9, 0.5, 0.1, 1.0), (680, 0, 760, 100)),  # 8:1, where DETR's rounding differs
    (333, 517, (0.5, 0.5, 1.2, 0.1), (-33.3, 232.65, 366.3, 284.35)),  # odd sizes; past the edge
])
def test_boxes_in_original_pixels_hand_computed(w, h, box, expected):
    logits = np.zeros((2, 92), np.float32)
    logits[0, 1] = 10.0  # query 0: a confident person
    a = fake_analysis(w, h, [box, (0.5, 0.5, 1, 1)], logits, ["N/A", "person"] + ["x"] * 89)
    (det,) = a.detections(0.5)
    assert det.query == 0 and det.label == 1 and det.name == "person"
    assert det.score == pytest.approx(np.exp(10) / (np.exp(10) + 91))
    np.testing.assert_allclose(det.box, expected, rtol=1e-5, atol=1e-3)


def test_detections_order_threshold_and_no_object_column():
    logits = np.zeros((4, 4), np.float32)  # 3 classes + no-object
    logits[0] = [0, 2, 0, 0]
    logits[1] = [0, 0, 5, 0]
    logits[2] = [0, 0, 0, 9]  # sure it is no object: never a detection
    logits[3] = [3, 0, 0, 0]
    a = fake_analysis(100, 100, [(0.5, 0.5, 0.2, 0.2)] * 4, logits, ["a", "b", "c"])
    dets = a.detections(0.0)
    assert [d.query for d in dets] == [1, 3, 0, 2]
    assert [d.name for d in dets] == ["c", "a", "b", "a"]
    assert all(isinstance(d, Detection) and isinstance(d, tuple) for d in dets)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert [d.score for d in dets] == pytest.approx([p[1, 2], p[3, 0], p[0, 1], p[2, 0]])
    assert [d.query for d in a.detections(p[3, 0])] == [1]  # strictly above
    assert a.detections(0.999) == []
    assert a.class_name(7) == "class 7"


def test_detection_boxes_match_the_core_conversion(tiny):
    """The analysis' boxes are DETR's (cx, cy, w, h) times the ORIGINAL size, for any aspect."""
    from vitviz.core.models.detr_data import postprocess

    for w, h in ((150, 90), (60, 200), (128, 128)):
        a = vitviz.analyze(random_image(w, h, seed=w), model=tiny)
        dets = a.detections(0.0)
        ref = postprocess(a.logits, a.boxes, (h, w), threshold=0.0)
        assert [d.query for d in dets] == list(ref.query)
        np.testing.assert_allclose([d.box for d in dets], ref.boxes, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose([d.score for d in dets], ref.scores, rtol=1e-5)


# -- maps against the captured tensors ------------------------------------------------------------

def test_maps_equal_an_independent_capture(tiny, tiny_analysis):
    import torch

    from vitviz.core.capture.detr import run_detr_with_capture

    a = tiny_analysis
    cap = run_detr_with_capture(tiny.module, torch.from_numpy(a.model_input))
    h, w = cap.feat_hw
    assert (h, w) == a.feature_shape
    enc = cap.enc_attn.astype(np.float32)
    cross = cap.dec_cross.astype(np.float32)
    selfa = cap.dec_self.astype(np.float32)
    for layer, head, q, (r, c) in [(0, 0, 0, (0, 0)), (2, 3, 7, (3, 6)), (1, 2, 11, (1, 5)), (-1, 1, 4, (2, 1))]:
        cell = r * w + c  # row-major, no transpose
        m = a.cross_attention(layer, head, q)
        np.testing.assert_array_equal(m, cross[layer, head, q].reshape(h, w))
        assert m[r, c] == cross[layer, head, q, cell]
        np.testing.assert_array_equal(a.head_maps(q)[layer, head], m)
        el = min(layer, 1) if layer >= 0 else layer
        x, y = a.cell_center(r, c)
        frm = a.encoder_attention_map(el, head, (x, y), "from")
        np.testing.assert_array_equal(frm, enc[el, head, cell].reshape(h, w))
        np.testing.assert_array_equal(frm, a.encoder_attention_map(el, head, cell=(r, c)))
        to = a.encoder_attention_map(el, head, cell=(r, c), direction="to")
        np.testing.assert_array_equal(to, enc[el, head, :, cell].reshape(h, w))
        assert to[0, 1] == enc[el, head, 1, cell]
        np.testing.assert_array_equal(a.encoder_head_maps(cell=(r, c), direction="to")[el, head], to)
    np.testing.assert_allclose(a.cross_attention(1, "mean", 5), cross[1, :, 5].mean(0).reshape(h, w), rtol=1e-6)
    np.testing.assert_array_equal(a.cross_attention(1, "max", 5), cross[1, :, 5].max(0).reshape(h, w))
    np.testing.assert_allclose(a.encoder_attention_map(0, "mean", cell=(2, 3)),
                               enc[0, :, 2 * w + 3].mean(0).reshape(h, w), rtol=1e-6)
    qs = [9, 2, 5]
    np.testing.assert_array_equal(a.decoder_self_attention(2, 1, qs), selfa[2, 1][np.ix_(qs, qs)])
    assert a.decoder_self_attention(2, 1, qs)[0, 1] == selfa[2, 1, 9, 2]
    np.testing.assert_allclose(a.decoder_self_attention(0, "mean", qs), selfa[0][:, qs][:, :, qs].mean(0), rtol=1e-6)
    np.testing.assert_allclose(a.logits, cap.logits, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise_clear_errors(tiny_analysis):
    a = tiny_analysis
    with pytest.raises(ValueError, match="outside the image"):
        a.encoder_attention_map(0, 0, (-5, 3))
    with pytest.raises(ValueError, match="either point"):
        a.encoder_attention_map(0, 0)
    with pytest.raises(IndexError):
        a.encoder_attention_map(0, 0, cell=(4, 0))
    with pytest.raises(IndexError):
        a.cross_attention(3, 0, 0)
    with pytest.raises(IndexError):
        a.cross_attention(0, 0, 12)
    with pytest.raises(ValueError, match="direction"):
        a.encoder_attention_map(0, 0, cell=(0, 0), direction="sideways")


def test_padded_cells_are_nan_everywhere(padded_analysis):
    a = padded_analysis
    assert a.model_input.shape == (3, 192, 288) and a.feature_shape == (6, 9)
    pad = a.pad_mask
    expected = np.ones((6, 9), bool)
    expected[:4, :7] = False  # 213 x 128 of real image: the first 7 columns and 4 rows
    np.testing.assert_array_equal(pad, expected)
    assert a.valid_shape == (4, 7)
    maps = [a.cross_attention(0, 0, 3), a.cross_attention(2, "mean", 11), a.cross_attention(1, "min", 0),
            a.encoder_attention_map(1, "max", cell=(3, 6)), a.encoder_attention_map(0, 2, cell=(0, 0), direction="to"),
            *a.head_maps(5).reshape(-1, 6, 9), *a.encoder_head_maps(cell=(2, 2), direction="to").reshape(-1, 6, 9)]
    for m in maps:
        assert np.isnan(m[pad]).all()
        assert np.isfinite(m[~pad]).all()
    # a query's attention over the real cells still sums to 1: padding took none of it
    np.testing.assert_allclose(np.nansum(a.cross_attention(1, 2, 4)), 1.0, rtol=2e-3)
    with pytest.raises(ValueError, match="padding"):
        a.encoder_attention_map(0, 0, cell=(5, 8))
    # no point of the image lands in a padding cell
    w, h = a.image.size
    for x in np.linspace(0, w - 0.01, 25):
        for y in np.linspace(0, h - 0.01, 25):
            cell = a.cell_at(x, y)
            assert cell is not None and not pad[cell]


# -- the real architecture ------------------------------------------------------------------------

def test_detr_resnet50_at_a_small_image():
    a = vitviz.analyze(random_image(320, 240, seed=5), model="test_detr_r50_small", weights="random")
    assert a.model_input.shape == (3, 320, 426)  # DETR rounding: int(320 * 320 / 240)
    assert a.feature_shape == (10, 14)
    assert (a.num_encoder_layers, a.num_layers, a.num_heads, a.num_queries) == (6, 6, 8, 100)
    assert a.head_maps(0).shape == (6, 8, 10, 14)
    assert a.logits.shape == (100, 92) and a.class_names[18] == "dog"
    assert len(a.detections(0.0)) == 100
    assert np.isfinite(a.encoder_attention_map(5, "mean", (319, 239))).all()


def test_pretrained_detr_from_the_hub_cache(tmp_path, monkeypatch):
    """Absent: random weights and a note naming the file. Present: loaded strictly, trained."""
    import torch

    from vitviz.core.models.loading import load_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    absent = load_model("detr_resnet50", "pretrained")
    assert not absent.trained and absent.weights == "random"
    assert any("detr-r50-e632da11.pth" in n for n in absent.notes)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    sd = {k: v.clone() for k, v in absent.module.state_dict().items()}
    sd["class_embed.bias"] += 1.0  # so loading visibly changes something
    torch.save({"model": sd}, folder / "detr-r50-e632da11.pth")  # the official layout
    from vitviz.core.models.cache_check import remember_verified

    # as if a verified download had put it there: its bytes cannot have the sha256 its name promises
    remember_verified(folder / "detr-r50-e632da11.pth", "e632da11" + "0" * 56)
    present = load_model("detr_resnet50", "pretrained")
    assert present.trained and present.weights == "pretrained" and not present.notes
    assert torch.equal(present.module.class_embed.bias, sd["class_embed.bias"])


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(tmp_path, tiny):
    import torch

    from vitviz.core.models.loading import CheckpointError, load_model

    sd = dict(tiny.module.state_dict())
    sd.pop("query_embed.weight")
    sd["transformer.encoder.layers.7.linear1.weight"] = torch.zeros(2, 2)
    path = tmp_path / "wrong.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_model("test_tiny_detr", str(path))
    text = str(err.value)
    assert "wrong.pth" in text and "missing keys" in text and "query_embed.weight" in text
    assert "unexpected keys" in text and "transformer.encoder.layers.7.linear1.weight" in text
