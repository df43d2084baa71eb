"""analyze_many: batched forwards give what analyze() gives one by one, in order; keep, errors,
cancel, inputs; per-image reducers and their summaries against independent computations."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

import tests.swin_helpers  # noqa: F401  (registers the tiny Swin specs)
import vitviz
from vitviz.core.api import analyze, get_model
from vitviz.core.batch import ImageFailure, ImageResult, analyze_many
from vitviz.core.batch.reducers import Reducer, get_reducer, register_reducer, summarize
from vitviz.core.image import ImageLoadError
from vitviz.core.models.detr_specs import detr_spec
from vitviz.core.models.registry import Preprocess, register

register(detr_spec("test_batch_tiny_detr", "Tiny DETR (batch tests)", Preprocess("resize_short", 96, max_size=160),
                   group="Tests", backbone="resnet18", d_model=32, nheads=2, enc_layers=1, dec_layers=2,
                   dim_feedforward=64, num_queries=6))


def images(n=5, seed=0, sizes=None):
    rng = np.random.default_rng(seed)
    sizes = sizes or [(60 + 7 * i, 80 + 3 * i) for i in range(n)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def tiny_vit():
    return get_model("test_tiny_vit", "random", cache=False)


def _close_vit(a, b, atol):
    assert np.array_equal(a.model_input, b.model_input)
    np.testing.assert_allclose(b.attn.astype(np.float32), a.attn.astype(np.float32), atol=atol)
    np.testing.assert_allclose(b.logits, a.logits, atol=1e-5)
    assert a.grid.shape == b.grid.shape and a.num_prefix_tokens == b.num_prefix_tokens
    assert (a.model_name, a.weights, a.trained, a.class_names) == (b.model_name, b.weights, b.trained, b.class_names)


def test_vit_batches_equal_one_by_one(tiny_vit):
    imgs = images(7)
    many = list(analyze_many(imgs, model=tiny_vit, batch_size=3, attention_dtype="float32"))
    assert len(many) == 7 and all(type(m).__name__ == "ViTAnalysis" for m in many)
    for img, b in zip(imgs, many):
        _close_vit(analyze(img, model=tiny_vit, attention_dtype="float32"), b, atol=1e-5)
        assert b.attn.flags.c_contiguous and b.attn.base is None  # its own memory, not a batch view


def test_vit_float16_within_rounding(tiny_vit):
    imgs = images(4, seed=3)
    for img, b in zip(imgs, analyze_many(imgs, model=tiny_vit, batch_size=4)):
        a = analyze(img, model=tiny_vit)
        assert b.attn.dtype == np.float16
        _close_vit(a, b, atol=2e-3)  # float16 spacing near 1 is 1e-3: one rounding step apart at most
        np.testing.assert_allclose(b.rollout(), a.rollout(), atol=1e-3)


@pytest.mark.parametrize("name", ["test_tiny_swin", "test_tiny_swin_v2"])
def test_swin_batches_equal_one_by_one(name):
    lm = get_model(name, "random", cache=False)
    imgs = images(5, seed=1)
    many = list(analyze_many(imgs, model=lm, batch_size=2, attention_dtype="float32"))
    for img, b in zip(imgs, many):
        a = analyze(img, model=lm, attention_dtype="float32")
        assert np.array_equal(a.model_input, b.model_input)
        assert [blk.layout for blk in a.blocks] == [blk.layout for blk in b.blocks]
        for x, y in zip(a.attn, b.attn):
            assert x.shape == y.shape
            np.testing.assert_allclose(y, x, atol=1e-5)
        np.testing.assert_allclose(b.logits, a.logits, atol=1e-5)
        for x, y in zip(a.rel_bias, b.rel_bias):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(b.attention_map(1, 1, "mean", (3, 4)), a.attention_map(1, 1, "mean", (3, 4)),
                                   atol=1e-5)


def test_detr_batches_same_sized_inputs_and_equals_one_by_one():
    lm = get_model("test_batch_tiny_detr", "random", cache=False)
    # three of one size (one batch), one other size, then the first size again
    imgs = images(sizes=[(90, 120), (90, 120), (90, 120), (120, 70), (90, 120)], seed=2)
    calls = []
    orig = lm.module.forward

    def counting(x, *a, **k):
        calls.append(x.shape[0])
        return orig(x, *a, **k)

    lm.module.forward = counting
    try:
        many = list(analyze_many(imgs, model=lm, batch_size=5, attention_dtype="float32"))
    finally:
        del lm.module.forward
    assert calls == [3, 1, 1]
    for img, b in zip(imgs, many):
        a = analyze(img, model=lm, attention_dtype="float32")
        assert np.array_equal(a.model_input, b.model_input) and not b.pad_mask.any()
        for f in ("enc_attn", "dec_self", "dec_cross", "logits", "boxes", "layer_logits", "layer_boxes"):
            np.testing.assert_allclose(getattr(b, f), getattr(a, f), atol=1e-5, err_msg=f)
        assert [d.query for d in a.detections(0.0)] == [d.query for d in b.detections(0.0)]


def test_order_and_errors(tiny_vit, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = tmp_path / "good.png"
    Image.fromarray(images(1)[0]).save(good)
    srcs = [str(good), str(bad), images(1, seed=5)[0], str(tmp_path / "missing.png"), str(good)]
    out = list(analyze_many(srcs, model=tiny_vit, batch_size=2, on_error="yield", keep="predictions"))
    assert [type(o) for o in out] == [ImageResult, ImageFailure, ImageResult, ImageFailure, ImageResult]
    assert [o.index for o in out] == [0, 1, 2, 3, 4]
    assert out[1].source == str(bad) and "not an image Pillow can read" in out[1].error
    assert "no such file" in out[3].error and out[2].source == "<ndarray #2>"
    assert out[0].values == out[4].values
    skipped = list(analyze_many(srcs, model=tiny_vit, batch_size=2, on_error="skip", keep="predictions"))
    assert [o.index for o in skipped] == [0, 2, 4]
    with pytest.raises(ImageLoadError, match="bad.png"):
        list(analyze_many(srcs, model=tiny_vit, batch_size=2))


def test_keep_stats_holds_only_small_values(tiny_vit):
    imgs = images(3)
    results = list(analyze_many(imgs, model=tiny_vit, keep="stats"))
    assert all(isinstance(r, ImageResult) for r in results)
    r = results[0]
    assert set(r.values) == {"predictions", "rollout"} and r.family == "vit" and r.model_name == "test_tiny_vit"
    a = analyze(imgs[0], model=tiny_vit)
    # independent: rollout from the equations, predictions from a float64 softmax of the logits
    attn = a.attn.astype(np.float64).mean(axis=1)
    n = attn.shape[-1]
    roll = np.eye(n)
    for layer in attn:
        w = 0.5 * layer + 0.5 * np.eye(n)
        roll = (w / w.sum(-1, keepdims=True)) @ roll
    ref = roll[0, 1:].reshape(a.grid.shape)
    np.testing.assert_allclose(np.asarray(r.values["rollout"]["map"]), ref, atol=1e-5)
    assert (r.values["rollout"]["peak_row"], r.values["rollout"]["peak_col"]) == np.unravel_index(ref.argmax(), ref.shape)
    p = ref / ref.sum()
    assert r.values["rollout"]["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-4)
    z = np.exp(a.logits.astype(np.float64) - a.logits.max())
    z /= z.sum()
    assert r.values["predictions"]["top1_index"] == int(z.argmax())
    assert r.values["predictions"]["top1_probability"] == pytest.approx(z.max(), abs=1e-6)
    assert r.values["predictions"]["top1_label"] == f"class {int(z.argmax())}"  # a headless test model


def test_custom_reducers_plug_in(tiny_vit):
    register_reducer(Reducer("test_first_layer_cls_self", lambda a: {"value": float(a.attn[0, :, 0, 0].mean())},
                             ("vit",)), replace=True)
    imgs = images(2)
    out = list(analyze_many(imgs, model=tiny_vit, keep=["test_first_layer_cls_self"]))
    a = analyze(imgs[1], model=tiny_vit)
    assert out[1].values["test_first_layer_cls_self"]["value"] == pytest.approx(float(a.attn[0, :, 0, 0].mean()), abs=1e-3)
    out = list(analyze_many(imgs, model=tiny_vit, keep=lambda a: {"layers": a.num_layers}))
    assert out[0].values == {"layers": 3}
    with pytest.raises(ValueError, match="unknown statistic 'nope'"):
        list(analyze_many(imgs, model=tiny_vit, keep=["nope"]))
    # a reducer for another family is left out, not an error
    assert list(analyze_many(imgs[:1], model=tiny_vit, keep=["detections"]))[0].values == {}


def test_batch_array_tensor_and_generator_inputs(tiny_vit):
    imgs = images(sizes=[(64, 80)] * 3)
    ref = [analyze(i, model=tiny_vit) for i in imgs]
    stacked = np.stack(imgs)  # N x H x W x C
    tensors = torch.from_numpy(stacked).permute(0, 3, 1, 2)  # N x C x H x W
    for src in (stacked, tensors, (i for i in imgs), [Image.fromarray(i) for i in imgs]):
        out = list(analyze_many(src, model=tiny_vit, batch_size=2))
        assert len(out) == 3
        for a, b in zip(ref, out):
            assert np.array_equal(a.model_input, b.model_input)
    one = list(analyze_many(imgs[0], model=tiny_vit))  # a single image is a batch of one
    assert len(one) == 1


def test_workers_decode_the_same(tiny_vit, tmp_path):
    paths = []
    for i, img in enumerate(images(5)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    a = list(analyze_many(paths, model=tiny_vit, batch_size=2, workers=0, keep="predictions"))
    b = list(analyze_many(paths, model=tiny_vit, batch_size=2, workers=1, keep="predictions"))
    assert [r.values for r in a] == [r.values for r in b]
    assert [r.source for r in b] == [str(p) for p in paths]


def test_cancel_and_progress(tiny_vit):
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        cancel.set()  # stop after the first batch

    out = list(analyze_many(images(6), model=tiny_vit, batch_size=2, cancel=cancel, progress=progress))
    assert len(out) == 2 and seen == [(2, 6)]


def test_bad_arguments(tiny_vit):
    with pytest.raises(ValueError, match="batch_size"):
        list(analyze_many(images(1), model=tiny_vit, batch_size=0))
    with pytest.raises(ValueError, match="on_error"):
        list(analyze_many(images(1), model=tiny_vit, on_error="ignore"))


def test_top_level_entry_and_default_model():
    out = list(vitviz.analyze_many(images(2), keep="predictions"))
    assert out[0].model_name == "demo_vit" and out[0].values["predictions"]["top1_label"]


def test_summarize_means_and_counts():
    get_reducer("predictions")
    rows = [{"values": {"predictions": {"top1_index": 3, "top1_label": "cat", "top1_probability": 0.5},
                        "rollout": {"map": [[1.0, 2.0]], "peak_row": 0, "peak_value": 2.0}}},
            {"values": {"predictions": {"top1_index": 5, "top1_label": "dog", "top1_probability": None},
                        "rollout": {"map": [[3.0, 6.0]], "peak_row": 0, "peak_value": 6.0}}},
            {"values": {"predictions": {"top1_index": 3, "top1_label": "cat", "top1_probability": 0.25}}}]
    s = summarize(rows)
    assert s["means"]["predictions"] == {"top1_probability": 0.375}  # None is missing; no mean of an index
    assert s["counts"]["predictions"] == {"top1_label": {"cat": 2, "dog": 1}}
    assert s["means"]["rollout"] == {"map": [[2.0, 4.0]], "peak_value": 4.0}
    # unregistered reducers: every number averaged, every string counted
    s = summarize([{"values": {"x": {"a": 1, "b": "u"}}}, {"values": {"x": {"a": 3, "b": "u"}}}])
    assert s == {"means": {"x": {"a": 2.0}}, "counts": {"x": {"b": {"u": 2}}}}


def test_bench_rows_run_on_a_tiny_model():
    from vitviz.bench.batch import rss_growth, throughput

    assert throughput("test_tiny_vit", "random", 2, 4) > 0
    m = rss_growth("test_tiny_vit", "random", 6, batch_size=2)
    assert m["images"] == 6 and m["rss_max_mib"] >= m["rss_first_batch_mib"] > 0
