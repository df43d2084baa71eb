"""Swin relevance: against a full token x token implementation written here from the equations (window
embedding through torchvision's roll and partition, its shifted-window mask, PatchMerging's token
order), and the captured gradients against finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitviz
from vitviz.core.api import get_model

from . import swin_helpers  # noqa: F401  (registers the tiny Swin models)


def partition(ids, mh, mw):
    """(Hp, Wp) -> (windows, Mh*Mw) as torchvision's shifted_window_attention partitions."""
    hp, wp = ids.shape
    return ids.view(hp // mh, mh, wp // mw, mw).permute(0, 2, 1, 3).reshape(-1, mh * mw)


def full_abar(block, p):
    """Block's mean_h (A * dA)^+ embedded in the stage's (T, T) matrix, from torchvision's own steps."""
    h, w = block.feature_size
    (mh, mw), (sh, sw) = block.layout.window, block.layout.shift
    hp, wp = -(-h // mh) * mh, -(-w // mw) * mw
    ids = torch.full((hp, wp), -1, dtype=torch.long)
    ids[:h, :w] = torch.arange(h * w).view(h, w)
    labels = torch.zeros((hp, wp), dtype=torch.long)
    if sh or sw:
        ids = torch.roll(ids, shifts=(-sh, -sw), dims=(0, 1))
        count = 0
        for hs in ((0, -mh), (-mh, -sh), (-sh, None)):
            for ws in ((0, -mw), (-mw, -sw), (-sw, None)):
                labels[hs[0]:hs[1], ws[0]:ws[1]] = count
                count += 1
    win_ids, win_labels = partition(ids, mh, mw), partition(labels, mh, mw)
    abar = torch.from_numpy(p).double().clamp(min=0).mean(dim=1)  # (windows, n, n)
    full = torch.zeros(h * w, h * w, dtype=torch.float64)
    for k in range(win_ids.shape[0]):
        for i in range(win_ids.shape[1]):
            for j in range(win_ids.shape[1]):
                a, b = win_ids[k, i], win_ids[k, j]
                if a >= 0 and b >= 0 and win_labels[k, i] == win_labels[k, j]:
                    full[a, b] = abar[k, i, j]
    return full


def merge_matrix(fine):
    hf, wf = fine
    hc, wc = -(-hf // 2), -(-wf // 2)
    m = torch.zeros(hc * wc, hf * wf, dtype=torch.float64)
    for r in range(hc):
        for c in range(wc):
            src = [(i, j) for i, j in ((2 * r, 2 * c), (2 * r + 1, 2 * c), (2 * r, 2 * c + 1), (2 * r + 1, 2 * c + 1))
                   if i < hf and j < wf]
            for i, j in src:
                m[r * wc + c, i * wf + j] = 1 / len(src)
    return m


def ref_swin_relevance(blocks, products, start=0):
    stages = sorted({b.stage for b in blocks})
    size = {b.stage: b.feature_size for b in blocks}
    t0 = size[0][0] * size[0][1]
    R = torch.eye(t0, dtype=torch.float64)
    base = torch.eye(t0, dtype=torch.float64)
    for s in stages:
        if s > 0:
            M = merge_matrix(size[s - 1])
            R, base = M @ R, M @ base
        for b in blocks:
            if b.stage == s and b.index >= start:
                R = R + full_abar(b, products[b.index]) @ R
    return (R.mean(dim=0) - base.mean(dim=0)).reshape(size[0]).numpy()


def maxnorm(m):
    return np.asarray(m, np.float64) / np.abs(m).max()


@pytest.fixture(scope="module")
def tiny_swin():
    from PIL import Image

    loaded = get_model("test_tiny_swin", "random", cache=False)
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8), "RGB")
    return loaded, vitviz.analyze(img, model=loaded, attention_dtype="float32")


def test_logits_and_attention_unchanged_by_gradient_capture(tiny_swin):
    from vitviz.core.capture.grad_swin import window_attention_grads

    loaded, a = tiny_swin
    logits, attn, grad = window_attention_grads(loaded, a.model_input, 3)
    np.testing.assert_allclose(logits, a.logits, atol=1e-5)
    for x, y in zip(attn, a.attn):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert all(np.abs(g).max() > 0 for g in grad)
    assert any(b.shifted for b in a.blocks) and any(b.padding != (0, 0) for b in a.blocks)


@pytest.mark.parametrize("start", [0, 3])
def test_relevance_matches_full_matrix_implementation(tiny_swin, start):
    from vitviz.core.capture.grad_swin import swin_products

    _, a = tiny_swin
    p, _ = swin_products(a, 2)
    got = a.explain("relevance", target=2, start_layer=start)
    assert got.shape == a.grid.shape
    np.testing.assert_allclose(maxnorm(got), maxnorm(ref_swin_relevance(a.blocks, p, start)), atol=1e-6)


@pytest.mark.parametrize("i", [0, 2])
def test_block_order_guard(tiny_swin, i):
    """Two blocks' gradient records swapped (an unshifted and a shifted block of one stage) must fail."""
    from vitviz.core.capture.grad_swin import swin_products

    _, a = tiny_swin
    p, _ = swin_products(a, 2)
    swapped = list(p)
    swapped[i], swapped[i + 1] = p[i + 1], p[i]
    got = maxnorm(a.explain("relevance", target=2))
    assert np.abs(got - maxnorm(ref_swin_relevance(a.blocks, swapped))).max() > 1e-3


def test_gradients_match_finite_differences():
    """dy/dA of a few entries of a shifted and an unshifted block, perturbing the softmax output the
    model uses in float64."""
    from vitviz.core.capture.grad_swin import window_attention_grads
    from vitviz.core.capture.swin import _SOFTMAX, swin_blocks
    from torch.overrides import TorchFunctionMode

    loaded = get_model("test_tiny_swin", "random", cache=False)
    model = loaded.module.double()
    x = torch.randn(1, 3, 72, 72, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, _, grad = window_attention_grads(loaded, x[0].numpy(), 4)

    class Bump(TorchFunctionMode):
        def __init__(self, where, eps):
            super().__init__()
            self.where, self.eps = where, eps

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in _SOFTMAX:
                out = out.clone()
                out[self.where] += self.eps
            return out

    blocks = swin_blocks(model)

    def score(block, where, eps):
        mode = Bump(where, eps)
        h1 = blocks[block][2].register_forward_pre_hook(lambda m, a: mode.__enter__() and None)
        h2 = blocks[block][2].register_forward_hook(lambda m, a, o: mode.__exit__(None, None, None) and None)
        try:
            with torch.no_grad():
                return model(x)[0, 4].item()
        finally:
            h1.remove()
            h2.remove()

    rng = np.random.default_rng(0)
    for block in (0, 1, 4):
        g = grad[block]
        biggest = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), g.shape))
        assert abs(g[biggest]) > 1e-3  # a comparison of zeros would prove nothing
        for where in [biggest] + [tuple(int(rng.integers(0, s)) for s in g.shape) for _ in range(2)]:
            eps = 1e-5
            fd = (score(block, where, eps) - score(block, where, -eps)) / (2 * eps)
            assert fd == pytest.approx(float(g[where]), rel=1e-3, abs=1e-6)


def test_demo_swin_relevance_peaks_on_the_object():
    from vitviz.demo.scenes import TEST_SEED, classification_scene

    img, label, box = classification_scene(TEST_SEED + 5, size=96)
    a = vitviz.analyze(img, model="demo_swin", weights="pretrained")
    assert a.trained and a.top_predictions(1)[0].index == label
    m = a.explain("relevance")
    r, c = np.unravel_index(np.argmax(m), m.shape)
    x0, y0, x1, y1 = a.grid.rect(r, c)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    assert box[0] - 6 <= cx <= box[2] + 6 and box[1] - 6 <= cy <= box[3] + 6
