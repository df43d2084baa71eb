"""The library baselines (Integrated Gradients from Captum, Grad-CAM from grad-cam) on tiny random
ViT / Swin models, against computations written here from the methods' equations."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import vitviz
import tests.conftest  # noqa: F401 (registers test_tiny_vit)
import tests.swin_helpers  # noqa: F401 (registers test_tiny_swin)
from vitviz.core.gradients import model_of

pytest.importorskip("captum")
pytest.importorskip("pytorch_grad_cam")


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (80, 90, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def vit():
    return vitviz.analyze(_image(), model="test_tiny_vit", weights="random")


@pytest.fixture(scope="module")
def swin():
    return vitviz.analyze(_image(1), model="test_tiny_swin", weights="random", attention_dtype="float32")


def _score(analysis, x, target, contrast=-1):
    with torch.no_grad():
        z = model_of(analysis).module(torch.from_numpy(np.asarray(x, np.float32))[None])[0].double()
    return float(z[target] - (z[contrast] if contrast >= 0 else 0))


def _hand_ig(analysis, x0, target, steps):
    """(x - x0) * sum_i w_i dy/dx (x0 + a_i (x - x0)), Gauss-Legendre nodes a_i, weights w_i on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    a, w = (nodes + 1) / 2, weights / 2
    x = torch.from_numpy(analysis.model_input.astype(np.float32))
    base = torch.from_numpy(np.asarray(x0, np.float32))
    total = torch.zeros_like(x, dtype=torch.float64)
    module = model_of(analysis).module
    for ai, wi in zip(a, w):
        p = (base + float(ai) * (x - base)).requires_grad_(True)
        y = module(p[None])[0, target]
        (g,) = torch.autograd.grad(y, p)
        total += wi * g.double()
    return ((x - base).double() * total).numpy()


def _tokens(per_pixel, rows, cols):
    h, w = per_pixel.shape
    return per_pixel.reshape(rows, h // rows, cols, w // cols).sum(axis=(1, 3))


def test_integrated_gradients_against_a_hand_quadrature_and_completeness(vit):
    a = vit
    t = int(np.argmax(a.logits))
    m = a.explain("integrated_gradients", steps=16)
    assert m.shape == a.grid.shape == (4, 4) and m.dtype == np.float32 and np.isfinite(m).all()
    mean, std = np.asarray(a.input_mean), np.asarray(a.input_std)
    black = np.broadcast_to((-mean / std)[:, None, None], a.model_input.shape)
    # black in pixel space: the de-normalised baseline is 0 in every channel
    assert np.allclose(black * std[:, None, None] + mean[:, None, None], 0, atol=1e-6)
    ref = _tokens(_hand_ig(a, black, t, 16).sum(axis=0), 4, 4)
    assert np.allclose(m, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
    # completeness: with enough points the tokens sum to y(x) - y(x')
    fine = a.explain("integrated_gradients", steps=128)
    expected = _score(a, a.model_input, t) - _score(a, black, t)
    assert abs(expected) > 0.05
    assert fine.sum() == pytest.approx(expected, rel=0.02, abs=1e-3)
    mags = a.explain("integrated_gradients", steps=16, reduce="abs_sum")
    assert (mags >= np.abs(m) - 1e-6).all() and mags.sum() > abs(m.sum())


def test_integrated_gradients_other_baselines_target_and_swin(vit, swin):
    from scipy.ndimage import gaussian_filter

    a = vit
    x = a.model_input.astype(np.float64)
    mean_img = np.broadcast_to(x.reshape(3, -1).mean(axis=1)[:, None, None], x.shape)
    blur_img = np.stack([gaussian_filter(c, 5 * 64 / 224) for c in x])
    other = int(np.argsort(a.logits)[0])  # the least likely class
    for name, x0 in (("mean", mean_img), ("blur", blur_img)):
        m = a.explain("integrated_gradients", steps=128, baseline=name, target=other)
        assert m.sum() == pytest.approx(_score(a, x, other) - _score(a, x0, other), rel=0.03, abs=2e-3)
    c = a.explain("integrated_gradients", steps=128, target=other, contrast=int(np.argmax(a.logits)))
    mean, std = np.asarray(a.input_mean), np.asarray(a.input_std)
    black = np.broadcast_to((-mean / std)[:, None, None], x.shape)
    t = int(np.argmax(a.logits))
    diff = (_score(a, x, other) - _score(a, black, other)) - (_score(a, x, t) - _score(a, black, t))
    assert c.sum() == pytest.approx(diff, rel=0.03, abs=2e-3)
    s = swin.explain("integrated_gradients", steps=64)
    assert s.shape == swin.grid.shape == (18, 18) and np.isfinite(s).all()
    ts = int(np.argmax(swin.logits))
    black_s = np.broadcast_to((-mean / std)[:, None, None], swin.model_input.shape)
    expected = _score(swin, swin.model_input, ts) - _score(swin, black_s, ts)
    assert s.sum() == pytest.approx(expected, rel=0.03, abs=2e-3)


def _hand_cam(module, layer, x, target, to_grid):
    """relu(sum_c w_c A_c), w_c = mean over positions of dy/dA_c, at `layer`'s output."""
    keep = {}
    h = layer.register_forward_hook(lambda mod, i, o: keep.setdefault("a", o))
    try:
        y = module(torch.from_numpy(x.astype(np.float32))[None])[0, target]
        (g,) = torch.autograd.grad(y, keep["a"])
    finally:
        h.remove()
    act, grad = to_grid(keep["a"].detach()[0]).double(), to_grid(g[0]).double()  # (C, rows, cols)
    w = grad.mean(dim=(1, 2))
    return torch.clamp((w[:, None, None] * act).sum(0), min=0).numpy()


def test_grad_cam_vit_against_the_equation(vit):
    a = vit
    module = model_of(a).module
    t = int(np.argmax(a.logits))
    for block in (-1, 0):
        m = a.explain("grad_cam", block=block)
        assert m.shape == (4, 4) and np.isfinite(m).all() and (m >= 0).all()
        ref = _hand_cam(module, module.encoder.layers[block].ln_1, a.model_input, t,
                        lambda z: z[1:].reshape(4, 4, -1).permute(2, 0, 1))
        assert np.allclose(m, ref, rtol=1e-4, atol=1e-6)
    assert m.max() > 0
    other = int(np.argsort(a.logits)[0])
    assert not np.allclose(a.explain("grad_cam", target=other), a.explain("grad_cam"))
    with pytest.raises(IndexError, match="block 3"):
        a.explain("grad_cam", block=3)


def test_grad_cam_swin_on_the_patch_grid(swin):
    a = swin
    module = model_of(a).module
    t = int(np.argmax(a.logits))
    stage1_first = module.features[3][0]  # stage 1: 9 x 9 tokens, each 2 x 2 patch tokens
    m = a.explain("grad_cam", block=2)
    ref = _hand_cam(module, stage1_first.norm1, a.model_input, t, lambda z: z.permute(2, 0, 1))
    assert ref.shape == (9, 9) and ref.max() > 0
    assert m.shape == (18, 18)
    assert np.allclose(m, np.kron(ref, np.ones((2, 2))), rtol=1e-4, atol=1e-6)


def test_baselines_go_through_faithfulness_and_are_listed(vit):
    names = {m.name for m in vitviz.core.methods.methods("vit")}
    assert {"integrated_gradients", "grad_cam"} <= names
    assert {"integrated_gradients", "grad_cam"} <= {m.name for m in vitviz.core.methods.methods("swin")}
    f = vit.faithfulness("grad_cam", steps=4)
    assert len(f.deletion) == 5 and f.deletion[0] == pytest.approx(float(vit.probabilities()[f.target]), abs=1e-5)


def test_missing_package_says_how_to_install(monkeypatch):
    a = vitviz.analyze(_image(3), model="test_tiny_vit", weights="random")  # nothing cached yet
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    for name in ("integrated_gradients", "grad_cam"):
        with pytest.raises(ImportError, match=r"vitviz\[baselines\]"):
            a.explain(name)
