"""Gradient rollout and relevance for ViT, against an independent implementation written here from the
equations with a hand-written forward that keeps every attention matrix as an explicit tensor."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitviz
from vitviz.core.api import get_model


def hand_forward(model, x):
    """torchvision VisionTransformer.forward written out, attention explicit: (logits, [A_l])."""
    n = x.shape[0]
    t = model.conv_proj(x).flatten(2).transpose(1, 2)  # (n, patches, d)
    t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1) + model.encoder.pos_embedding
    attns = []
    for blk in model.encoder.layers:
        mha = blk.self_attention
        y = blk.ln_1(t)
        d, h = mha.embed_dim, mha.num_heads
        w, b = mha.in_proj_weight, mha.in_proj_bias
        q = (y @ w[:d].T + b[:d]).view(n, -1, h, d // h).transpose(1, 2)
        k = (y @ w[d:2 * d].T + b[d:2 * d]).view(n, -1, h, d // h).transpose(1, 2)
        v = (y @ w[2 * d:].T + b[2 * d:]).view(n, -1, h, d // h).transpose(1, 2)
        a = torch.softmax(torch.einsum("nhqc,nhkc->nhqk", q, k) / (d // h) ** 0.5, dim=-1)
        a.retain_grad()
        attns.append(a)
        o = torch.einsum("nhqk,nhkc->nhqc", a, v).transpose(1, 2).reshape(n, -1, d)
        t = t + mha.out_proj(o)
        t = t + blk.mlp(blk.ln_2(t))
    t = model.encoder.ln(t)
    return model.heads(t[:, 0]), attns


def hand_grads(model, x, target, contrast=-1):
    logits, attns = hand_forward(model, x)
    y = logits[0, target] - (logits[0, contrast] if contrast >= 0 else 0)
    y.backward()
    A = [a[0].detach().double() for a in attns]
    G = [a.grad[0].double() for a in attns]
    return logits.detach(), A, G


def ref_grad_rollout(A, G, ratio):
    """vit-explain's grad_rollout (https://github.com/jacobgil/vit-explain) with issues #6 and #16 fixed."""
    n = A[0].shape[-1]
    result = torch.eye(n, dtype=torch.float64)
    for a, g in zip(A, G):  # forward order, layer l with its own gradient
        fused = (a * g).mean(dim=0)
        fused[fused < 0] = 0
        flat = fused.view(-1)
        _, idx = flat.topk(int(flat.numel() * ratio), largest=False)
        idx = idx[idx != 0]
        flat[idx] = 0
        m = (fused + torch.eye(n, dtype=torch.float64)) / 2
        m = m / m.sum(dim=-1, keepdim=True)
        result = m @ result
    return result


def ref_relevance(A, G, start=0):
    """Chefer et al. 2021, eq. 5-6: R = I; R += mean_h (dA * A)^+ R per block."""
    n = A[0].shape[-1]
    R = torch.eye(n, dtype=torch.float64)
    for layer, (a, g) in enumerate(zip(A, G)):
        if layer < start:
            continue
        abar = (g * a).clamp(min=0).mean(dim=0)
        R = R + abar @ R
    return R


def patch_map(R, grid, q=0):
    return R[q, 1:].reshape(grid).numpy()


def maxnorm(m):
    m = np.asarray(m, dtype=np.float64)
    return m / np.abs(m).max()


@pytest.fixture(scope="module")
def tiny(rgb_image):
    loaded = get_model("test_tiny_vit", "random", cache=False)
    a = vitviz.analyze(rgb_image, model=loaded, attention_dtype="float32")
    x = torch.from_numpy(a.model_input).unsqueeze(0)
    return loaded, a, x


@pytest.fixture(scope="module")
def rgb_image():
    from PIL import Image

    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), "RGB")


def test_hand_forward_is_the_model(tiny):
    loaded, a, x = tiny
    with torch.no_grad():
        ref = loaded.module(x)
    logits, _ = hand_forward(loaded.module, x)
    assert ref.abs().max() > 0
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)


def test_gradient_capture_leaves_logits_and_attention(tiny):
    from vitviz.core.capture.grad_vit import attention_grads

    loaded, a, x = tiny
    logits, attn, grad = attention_grads(loaded, a.model_input, 2)
    np.testing.assert_allclose(logits, a.logits, atol=1e-5)
    np.testing.assert_allclose(attn, a.attn, atol=1e-5)
    assert np.abs(grad).max() > 0
    assert all(not m._forward_hooks for m in loaded.module.modules())


@pytest.mark.parametrize("target", [-1, 0, 5])
def test_relevance_matches_independent_implementation(tiny, target):
    loaded, a, x = tiny
    t = int(np.argmax(a.logits)) if target == -1 else target
    _, A, G = hand_grads(loaded.module, x, t)
    for start in (0, 1):
        ref = patch_map(ref_relevance(A, G, start), a.grid.shape)
        got = a.explain("relevance", target=target, start_layer=start)
        assert got.shape == a.grid.shape
        np.testing.assert_allclose(maxnorm(got), maxnorm(ref), atol=1e-3)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_grad_rollout_matches_independent_implementation(tiny, ratio):
    loaded, a, x = tiny
    _, A, G = hand_grads(loaded.module, x, 3)
    R = ref_grad_rollout(A, G, ratio)
    np.testing.assert_allclose(maxnorm(a.explain("grad_rollout", target=3, discard_ratio=ratio)),
                               maxnorm(patch_map(R, a.grid.shape)), atol=1e-3)
    # a patch query is that patch's row
    q = 1 + a.grid.index(2, 1)
    np.testing.assert_allclose(maxnorm(a.explain("grad_rollout", target=3, discard_ratio=ratio, query=(2, 1))),
                               maxnorm(patch_map(R, a.grid.shape, q)), atol=1e-3)


def test_layer_order_guard(tiny):
    """Pairing layer l's attention with another layer's gradient (vit-explain's issue #6) must fail."""
    loaded, a, x = tiny
    _, A, G = hand_grads(loaded.module, x, 1)
    swapped = [G[2], G[1], G[0]]
    got = maxnorm(a.explain("relevance", target=1))
    assert np.abs(got - maxnorm(patch_map(ref_relevance(A, swapped), a.grid.shape))).max() > 1e-2
    got = maxnorm(a.explain("grad_rollout", target=1, discard_ratio=0.0))
    assert np.abs(got - maxnorm(patch_map(ref_grad_rollout(A, swapped, 0.0), a.grid.shape))).max() > 1e-2


def test_contrast_is_the_difference_of_the_scores(tiny):
    loaded, a, x = tiny
    _, A, G = hand_grads(loaded.module, x, 4, contrast=0)
    ref = patch_map(ref_relevance(A, G), a.grid.shape)
    np.testing.assert_allclose(maxnorm(a.explain("relevance", target=4, contrast=0)), maxnorm(ref), atol=1e-3)
    info = a.target_info(4, 0)
    assert info.index == 4 and info.contrast == 0
    assert info.score == pytest.approx(float(a.logits[4] - a.logits[0]), abs=1e-6)
    assert "−" in info.label


def test_different_classes_give_different_maps(tiny):
    _, a, _ = tiny
    assert np.abs(maxnorm(a.explain("relevance", target=0)) - maxnorm(a.explain("relevance", target=1))).max() > 1e-2


def test_backward_runs_once_per_target(tiny, monkeypatch):
    import vitviz.core.capture.grad_vit as gv

    _, a, _ = tiny
    calls = []
    real = gv.attention_grads
    monkeypatch.setattr(gv, "attention_grads", lambda *args, **kw: calls.append(args[2:]) or real(*args, **kw))
    a.explain("relevance", target=6)
    a.explain("relevance", target=6, start_layer=1)
    a.explain("grad_rollout", target=6, discard_ratio=0.5)
    a.explain("relevance", target=6, query=(0, 0))
    assert len(calls) == 1
    a.explain("relevance", target=5, contrast=6)
    assert len(calls) == 2


def test_target_info_top_class(tiny):
    _, a, _ = tiny
    info = a.target_info()
    assert info.index == int(np.argmax(a.logits))
    assert info.score == pytest.approx(float(a.logits.max()))
    assert 0 < info.probability <= 1


def test_clear_errors(tiny, rgb_image):
    _, a, _ = tiny
    with pytest.raises(ValueError, match="not a class"):
        a.explain("relevance", target=7)
    with pytest.raises(ValueError, match="at least -1"):
        a.explain("relevance", target=-2)
    with pytest.raises(ValueError, match="target itself"):
        a.explain("relevance", target=2, contrast=2)
    with pytest.raises(ValueError, match="start_layer 3 is out of range"):
        a.explain("relevance", start_layer=3)
    import dataclasses

    bare = dataclasses.replace(a)  # a copy made by hand has no model attached
    with pytest.raises(ValueError, match="no model attached"):
        bare.explain("relevance")


def test_declarations():
    for name in ("grad_rollout", "relevance"):
        m = vitviz.methods("vit")
        decl = next(d for d in m if d.name == name)
        assert decl.needs_grad and decl.param("target").default == -1


def test_demo_vit_relevance_peaks_on_the_object():
    """One held-out scene, fast; the rates over many scenes are test_class_specific_rates.py (slow)."""
    from vitviz.demo.scenes import TEST_SEED, classification_scene

    img, label, box = classification_scene(TEST_SEED + 5, size=96)
    a = vitviz.analyze(img, model="demo_vit", weights="pretrained")
    assert a.trained and a.top_predictions(1)[0].index == label
    m = a.explain("relevance")
    r, c = np.unravel_index(np.argmax(m), m.shape)
    x0, y0, x1, y1 = a.grid.rect(r, c)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    assert box[0] - 6 <= cx <= box[2] + 6 and box[1] - 6 <= cy <= box[3] + 6


@pytest.mark.slow
def test_vit_b16_matches_independent_implementation():
    """A random torchvision vit_b_16 (head re-initialised: torchvision zeroes it), 224 px, 197 tokens."""
    from PIL import Image

    loaded = get_model("vit_b_16", "random", cache=False)
    torch.manual_seed(0)
    torch.nn.init.normal_(loaded.module.heads.head.weight, std=0.05)
    rng = np.random.default_rng(4)
    img = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "RGB")
    a = vitviz.analyze(img, model=loaded, attention_dtype="float32")
    x = torch.from_numpy(a.model_input).unsqueeze(0)
    logits, A, G = hand_grads(loaded.module, x, 17)
    with torch.no_grad():
        torch.testing.assert_close(logits, loaded.module(x), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(maxnorm(a.explain("relevance", target=17)),
                               maxnorm(patch_map(ref_relevance(A, G), a.grid.shape)), atol=1e-3)
    np.testing.assert_allclose(maxnorm(a.explain("grad_rollout", target=17, discard_ratio=0.9)),
                               maxnorm(patch_map(ref_grad_rollout(A, G, 0.9), a.grid.shape)), atol=1e-3)
    swapped = G[::-1]
    assert np.abs(maxnorm(a.explain("relevance", target=17))
                  - maxnorm(patch_map(ref_relevance(A, swapped), a.grid.shape))).max() > 1e-2
