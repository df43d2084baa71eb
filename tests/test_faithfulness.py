"""Faithfulness metrics: deletion / insertion (RISE), positive / negative perturbation (Chefer 2021),
cascading model randomisation (Adebayo 2018). Expected values are written from the definitions here,
not from vitviz's functions."""
from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest

from vitviz.core.faithfulness.curves import (Cancelled, deletion_insertion, pixel_map, pixel_order,
                                             random_order)
from vitviz.core.faithfulness.perturb import accuracy_curve, perturbation

H = W = 16
N = H * W
V_IN, V_OUT = 0.9, 0.1  # the region's value and the rest's, every channel


def trapz(y, x):
    return (np.trapezoid if hasattr(np, "trapezoid") else np.trapz)(y, x)


def region_mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[0:4, 0:8] = True  # 32 pixels: tokens (0, 0) and (0, 1) of a 4 x 4 grid of 4 px cells
    return m


def region_model(batch: np.ndarray) -> np.ndarray:
    """Class 0's probability is s = the mean of the region over all channels (logits log s, log 1-s)."""
    s = batch[:, :, region_mask()].reshape(len(batch), -1).mean(axis=1)
    return np.log(np.stack([s, 1 - s], axis=1))


def region_image() -> np.ndarray:
    return np.where(region_mask(), V_IN, V_OUT)[None].repeat(3, axis=0).astype(np.float32)


def ideal_token_map() -> np.ndarray:
    m = np.zeros((4, 4))
    m[0, 0:2] = 1.0
    return m


def test_pixel_map_is_nearest_per_patch_and_ties_go_by_pixel_index():
    tok = np.arange(16.0).reshape(4, 4)
    assert np.array_equal(pixel_map(tok, (H, W)), np.kron(tok, np.ones((4, 4))))
    order = pixel_order(pixel_map(ideal_token_map(), (H, W)))
    flat = region_mask().ravel()
    expected = np.concatenate([np.flatnonzero(flat), np.flatnonzero(~flat)])  # each part ascending
    assert np.array_equal(order, expected)


def test_deletion_curve_of_the_ideal_map_in_closed_form():
    """Removing k region pixels (k <= R) gives s = ((R - k) v + k m) / R with m the channel mean; the
    curve is linear up to r = R / N and flat after, so its area is r (v + m) / 2 + (1 - r) m."""
    x = region_image()
    order = pixel_order(pixel_map(ideal_token_map(), (H, W)))
    c = deletion_insertion(region_model, x, order, target=0, steps=16)  # 16 pixels per step
    r_pix = 32
    m = (r_pix * V_IN + (N - r_pix) * V_OUT) / N  # 0.2
    k = np.arange(17) * 16
    gone = np.minimum(k, r_pix)
    expected = ((r_pix - gone) * V_IN + gone * m) / r_pix
    assert np.allclose(c.fractions, k / N)
    assert np.allclose(c.deletion, expected, atol=1e-6)
    r = r_pix / N
    assert c.deletion_auc == pytest.approx(r * (V_IN + m) / 2 + (1 - r) * m, abs=1e-6)  # 0.24375
    # a ranking that takes the region last deletes nothing of it until the end: a higher AUC
    worst = deletion_insertion(region_model, x, order[::-1], target=0, steps=16)
    assert worst.deletion_auc > c.deletion_auc + 0.3


def _random_model(classes=3, seed=0):
    w = np.random.default_rng(seed).normal(size=(classes, 3 * N)) / np.sqrt(3 * N)

    def predict(batch):
        return np.tanh(batch.reshape(len(batch), -1) @ w.T * 3)
    return predict


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_curve_ends_are_the_untouched_fully_deleted_and_blurred_images():
    from scipy.ndimage import gaussian_filter

    predict = _random_model()
    x = np.random.default_rng(1).normal(size=(3, H, W)).astype(np.float32)
    order = random_order(N, 3)
    c = deletion_insertion(predict, x, order, target=2, steps=10)
    sigma = 5 * H / 224
    soft = np.stack([gaussian_filter(ch.astype(np.float64), sigma) for ch in x]).astype(np.float32)
    mean = np.broadcast_to(x.reshape(3, -1).mean(axis=1)[:, None, None], x.shape)
    p = lambda img: _softmax(predict(np.asarray(img, np.float32)[None]))[0, 2]  # noqa: E731
    assert len(c.deletion) == len(c.insertion) == 11
    assert c.deletion[0] == pytest.approx(p(x), abs=1e-6)
    assert c.deletion[-1] == pytest.approx(p(mean), abs=1e-6)
    assert c.insertion[0] == pytest.approx(p(soft), abs=1e-6)
    assert c.insertion[-1] == pytest.approx(p(x), abs=1e-6)
    # step 3 of 10: round(0.3 N) = 77 pixels, built here by hand
    k = round(3 * N / 10)
    d = x.copy().reshape(3, -1)
    d[:, order[:k]] = mean.reshape(3, -1)[:, order[:k]]
    assert c.deletion[3] == pytest.approx(p(d.reshape(x.shape)), abs=1e-6)
    assert c.deletion_auc == pytest.approx(trapz(c.deletion, c.fractions), abs=1e-12)
    assert c.insertion_auc == pytest.approx(trapz(c.insertion, c.fractions), abs=1e-12)


def test_random_ranking_is_seeded():
    a, b, other = random_order(N, 7), random_order(N, 7), random_order(N, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    assert np.array_equal(np.sort(a), np.arange(N))


def test_progress_and_cancel():
    x, order = region_image(), random_order(N, 0)
    seen = []
    deletion_insertion(region_model, x, order, 0, steps=9, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20, 20) and [d for d, _ in seen] == [4, 8, 12, 16, 20]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        deletion_insertion(region_model, x, order, 0, steps=9, cancel=stop)
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2
    with pytest.raises(Cancelled):
        deletion_insertion(region_model, x, order, 0, steps=9, batch_size=4, cancel=cancel_after_two)


def test_positive_and_negative_perturbation_in_closed_form():
    x = region_image()
    order = pixel_order(pixel_map(ideal_token_map(), (H, W)))
    r = perturbation(region_model, x, order, target=0)
    m = (32 * V_IN + (N - 32) * V_OUT) / N
    k = np.rint(np.arange(1, 10) / 10 * N)
    gone_pos = np.minimum(k, 32)  # most relevant first: the region goes first
    gone_neg = np.maximum(k - (N - 32), 0)  # least relevant first: the region goes last
    pos = ((32 - gone_pos) * V_IN + gone_pos * m) / 32
    neg = ((32 - gone_neg) * V_IN + gone_neg * m) / 32
    assert np.allclose(r.positive, pos, atol=1e-6) and np.allclose(r.negative, neg, atol=1e-6)
    assert np.array_equal(r.positive_correct, pos > 0.5) and np.array_equal(r.negative_correct, neg > 0.5)
    assert r.positive_auc == pytest.approx(trapz(pos, np.arange(1, 10) / 10), abs=1e-6)
    flipped = perturbation(region_model, x, order[::-1], target=0)  # a map that is exactly wrong
    acc, auc = accuracy_curve([r, flipped], "positive")
    assert np.allclose(acc, (np.asarray(pos > 0.5, float) + (neg > 0.5)) / 2)
    assert auc == pytest.approx(trapz(acc, np.arange(1, 10) / 10))


# ---------------------------------------------------------------------------------- demo models


def _scene(i: int, size: int = 64):
    from vitviz.demo.scenes import TEST_SEED, classification_scene

    return classification_scene(TEST_SEED + 60_000 + i, size)[0]


@pytest.fixture(scope="module")
def demo_analysis():
    import vitviz

    return vitviz.analyze(_scene(0), model="demo_vit")


def test_analysis_faithfulness_against_a_hand_built_deletion(demo_analysis):
    """The rollout map upsampled with np.kron, ranked by a stable sort, pixels replaced by hand, the
    model run directly: the same probabilities as analysis.faithfulness."""
    import torch

    from vitviz.core.gradients import model_of

    a = demo_analysis
    f = a.faithfulness("rollout", steps=8)
    t = int(np.argmax(a.logits))
    assert f.target == t and f.fractions[-1] == 1.0 and len(f.deletion) == 9
    tok = a.rollout()
    cell = a.grid.cell_h
    order = np.argsort(-np.kron(tok.astype(np.float64), np.ones((cell, cell))).ravel(), kind="stable")
    x = a.model_input.astype(np.float32)
    n = x.shape[1] * x.shape[2]
    mean = x.reshape(3, -1).mean(axis=1)
    imgs = []
    for i in range(9):
        d = x.reshape(3, -1).copy()
        d[:, order[:round(i * n / 8)]] = mean[:, None]
        imgs.append(d.reshape(x.shape))
    with torch.no_grad():
        p = torch.softmax(model_of(a).module(torch.from_numpy(np.stack(imgs))).double(), -1)[:, t].numpy()
    assert np.allclose(f.deletion, p, atol=1e-5)
    assert f.deletion[0] == pytest.approx(float(a.probabilities()[t]), abs=1e-5)
    r1, r2 = a.faithfulness("random", steps=8, seed=3), a.faithfulness("random", steps=8, seed=3)
    assert np.array_equal(r1.deletion, r2.deletion) and r1.seed == 3


@pytest.mark.slow  # ~4 min on 2 cores: 20 scenes at 384 px, 3 x 102 forwards each
def test_relevance_beats_random_on_demo_scenes():
    """Deletion AUC of relevance below the random baseline's in at least 80% of 20 held-out scenes
    (measured: 85% at 384 px; means ~0.23 relevance, ~0.20 rollout, ~0.44 random). Insertion hardly
    separates them on these scenes: their big shapes survive the blur (insertion AUC ~0.92 for all)."""
    import vitviz

    aucs = {m: [] for m in ("relevance", "rollout", "random")}
    for i in range(20):
        a = vitviz.analyze(_scene(i, 384), model="demo_vit")
        for m in aucs:
            aucs[m].append(a.faithfulness(m, steps=50).deletion_auc)
    v = {m: np.asarray(x) for m, x in aucs.items()}
    share = float(np.mean(v["relevance"] < v["random"]))
    print({m: round(float(x.mean()), 3) for m, x in v.items()}, "relevance below random:", share)
    assert share >= 0.8
    assert v["relevance"].mean() < v["random"].mean() - 0.1


def _steps_map(analysis, query="cls", steps: int = 3):
    """A toy method with a parameter named like faithfulness's own `steps`: one hot token `steps`."""
    m = np.zeros(analysis.grid.shape)
    m.flat[steps] = 1.0
    return m


def test_a_method_parameter_named_steps_goes_in_method_params(demo_analysis):
    """Integrated Gradients has its own `steps` (quadrature points): a keyword would be the curves'."""
    from vitviz.core.faithfulness.report import image_row
    from vitviz.core.methods import Method, Param, register_method, unregister_method

    register_method(Method("one_token", "One token", {"vit": f"{__name__}:_steps_map"},
                           params=(Param("steps", 3, min=0),)))
    try:
        a = demo_analysis
        f = a.faithfulness("one_token", steps=4, method_params={"steps": 7})
        assert len(f.deletion) == 5 and f.params == {"steps": 7}
        g = a.grid
        tok = np.zeros(g.shape)
        tok.flat[7] = 1.0
        ref = a.faithfulness("rollout", steps=4)  # same image, target: only the ranking differs
        from vitviz.core.faithfulness import predictor
        from vitviz.core.faithfulness.curves import deletion_insertion, pixel_map, pixel_order
        from vitviz.core.gradients import model_of

        h, w = a.model_input.shape[-2:]
        order = pixel_order(pixel_map(tok, (h, w), (g.cell_h, g.cell_w)))
        c = deletion_insertion(predictor(model_of(a)), a.model_input, order, ref.target, 4)
        assert np.allclose(f.deletion, c.deletion) and np.allclose(f.insertion, c.insertion)
        s = a.sanity("one_token", method_params={"steps": 7})
        assert s.params == {"steps": 7} and np.allclose(s.correlations, 1.0)  # ignores the model: flagged
        with pytest.raises(ValueError, match="given twice"):
            a.faithfulness("one_token", method_params={"x": 1}, x=2)
        row = image_row(a, ["one_token"], 4, {"one_token": {"steps": 7}})
        assert row["methods"]["one_token"]["deletion"] == pytest.approx(c.deletion.tolist())
    finally:
        unregister_method("one_token")


def test_swin_goes_through_the_same_code():
    import vitviz

    a = vitviz.analyze(_scene(1), model="demo_swin")
    f = a.faithfulness("relevance", steps=10)
    t = int(np.argmax(a.logits))
    assert f.deletion[0] == pytest.approx(float(a.probabilities()[t]), abs=1e-5)
    assert f.deletion_auc < a.faithfulness("random", steps=10).deletion_auc
    p = a.perturbation("relevance")
    assert len(p.positive) == 9 and p.positive_auc < p.negative_auc


def test_sanity_correlations_drop_for_a_gradient_method(demo_analysis):
    from vitviz.core.gradients import model_of

    a = demo_analysis
    before = {k: v.clone() for k, v in model_of(a).module.state_dict().items()}
    s = a.sanity("relevance")
    assert s.steps == ["head", "block 3", "block 2", "block 1", "block 0", "embedding"]
    assert len(s.correlations) == 6 and not s.flagged
    assert abs(s.correlations[-1]) < 0.5
    from scipy.stats import spearmanr

    assert s.correlations[2] == pytest.approx(spearmanr(s.original.ravel(), s.maps[2].ravel()).statistic)
    after = model_of(a).module.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # a copy was randomised
    assert np.array_equal(s.original, a.explain("relevance"))


def test_sanity_flags_a_map_that_ignores_the_model(demo_analysis):
    """An 'edge detector' on the input (Adebayo's counter-example) correlates 1 at every step."""
    from vitviz.core.methods import Method, register_method, unregister_method

    register_method(Method("patch_brightness", "Patch brightness", {"vit": f"{__name__}:_brightness"}))
    try:
        s = demo_analysis.sanity("patch_brightness")
    finally:
        unregister_method("patch_brightness")
    assert s.flagged and np.allclose(s.correlations, 1.0)


def _brightness(analysis, query="cls"):
    g = analysis.grid
    x = analysis.model_input.mean(axis=0)
    return x.reshape(g.rows, g.cell_h, g.cols, g.cell_w).mean(axis=(1, 3))


def test_cli_writes_json_and_csv(tmp_path):
    from vitviz.__main__ import main

    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(3):
        _scene(10 + i, 64).save(folder / f"scene{i}.png")
    out_json, out_csv = tmp_path / "t.json", tmp_path / "t.csv"
    args = [str(folder), "--model", "demo_vit", "--methods", "rollout,relevance,random", "--steps", "10", "-q",
            "--param", "rollout.discard_ratio=0.5"]
    assert main(["faithfulness", *args, "--out", str(out_json)]) == 0
    assert main(["faithfulness", *args, "--out", str(out_csv)]) == 0
    t = json.loads(out_json.read_text())
    assert t["model"] == "demo_vit" and t["settings"]["steps"] == 10 and len(t["images"]) == 3
    assert t["settings"]["params"] == {"rollout": {"discard_ratio": "0.5"}}
    import vitviz

    a0 = vitviz.analyze(folder / "scene0.png", model="demo_vit")
    im0 = next(im for im in t["images"] if im["source"].endswith("scene0.png"))
    assert im0["methods"]["rollout"]["deletion_auc"] == pytest.approx(
        a0.faithfulness("rollout", steps=10, discard_ratio=0.5).deletion_auc, abs=1e-6)
    for m in ("rollout", "relevance", "random"):
        s = t["summary"][m]
        for k in ("deletion_auc", "insertion_auc", "positive_auc", "negative_auc"):
            vals = [im["methods"][m][k] for im in t["images"]]
            assert s[k]["n"] == 3 and s[k]["mean"] == pytest.approx(np.mean(vals))
            assert s[k]["se"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(3))
        assert len(s["positive_accuracy"]) == 9
        assert all(len(im["methods"][m]["deletion"]) == 11 for im in t["images"])
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 * 3 + 2 * 3
    assert {r["method"] for r in rows} == {"rollout", "relevance", "random"}
    first = next(r for r in rows if r["row"].endswith("scene0.png") and r["method"] == "relevance")
    im0 = next(im for im in t["images"] if im["source"].endswith("scene0.png"))
    assert float(first["deletion_auc"]) == pytest.approx(im0["methods"]["relevance"]["deletion_auc"])
    assert rows[-1]["row"] == "se" and rows[-1]["model"] == "demo_vit"


def test_cli_rejects_an_unknown_method(tmp_path, capsys):
    from vitviz.__main__ import main

    _scene(0).save(tmp_path / "a.png")
    assert main(["faithfulness", str(tmp_path), "--methods", "nosuch", "-q", "--out", str(tmp_path / "t.json")]) == 2
    assert "nosuch" in capsys.readouterr().err
