"""Integrated Gradients and Grad-CAM with a CLIP text prompt as the target (y = the image-text cosine
similarity, minus a contrast prompt's), checked against computations written here on the libraries'
own models (open_clip's encode_image / encode_text, transformers' CLIPModel), not through vitviz's
tower; and the clear errors of the families where a prompt means nothing. Tiny random models written
by the tests (tests/test_clip.py's helpers)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("captum")
pytest.importorskip("pytorch_grad_cam")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import vitviz  # noqa: E402
from tests import swin_helpers  # noqa: E402,F401  (registers test_tiny_swin)
from tests.test_clip import (PROMPTS, _hf_clip, _image, _open_clip_explicit, _open_clip_model,  # noqa: E402
                             _relevance_reference, hub)  # noqa: F401  (hub: the fixture)
from tests.test_detr_api import TINY_DETR  # noqa: E402,F401  (registers test_tiny_detr)

ARCH = "vitviz-tiny-clip-test"


@pytest.fixture
def clip(hub, tmp_path):
    """(analysis of the open_clip tower, the open_clip model, text embedding of a prompt)."""
    import open_clip

    model, ckpt = _open_clip_model(tmp_path, ARCH)
    a = vitviz.analyze(_image(), model=f"open_clip:{ARCH}/{ckpt}")
    tok = open_clip.get_tokenizer(ARCH)

    def text(prompt):
        with torch.no_grad():
            return model.encode_text(tok([prompt]))[0]

    return a, model, text


def _score(model, text_a, text_b=None):
    """x (n, 3, H, W) -> y (n,) = cos(encode_image(x), a) [- cos(encode_image(x), b)], open_clip's own."""
    def y(x):
        e = model.encode_image(x)
        s = F.cosine_similarity(e, text_a[None], dim=-1)
        return s - F.cosine_similarity(e, text_b[None], dim=-1) if text_b is not None else s
    return y


def _black(a) -> torch.Tensor:
    mean, std = np.asarray(a.input_mean), np.asarray(a.input_std)
    return torch.from_numpy(np.broadcast_to((-mean / std)[:, None, None], a.model_input.shape).astype(np.float32))


def _ig_by_hand(y, x: torch.Tensor, x0: torch.Tensor, steps: int) -> np.ndarray:
    """IG = (x - x0) * sum_k w_k dy/dx (x0 + a_k (x - x0)), Gauss-Legendre on [0, 1]; (3, H, W)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor(0.5 * (1 + nodes), dtype=torch.float32)[:, None, None, None]
    path = (x0 + alphas * (x - x0)).requires_grad_(True)
    (g,) = torch.autograd.grad(y(path).sum(), path)
    w = torch.tensor(0.5 * weights, dtype=torch.float64)[:, None, None, None]
    return ((x - x0).double() * (g.double() * w).sum(0)).reshape(x.shape[-3:]).numpy()


def _per_token(values: np.ndarray, cell: int = 8) -> np.ndarray:
    """(3, 32, 32) -> (4, 4) sums per 8 x 8 patch."""
    s = values.sum(0)
    return s.reshape(s.shape[0] // cell, cell, s.shape[1] // cell, cell).sum(axis=(1, 3))


# --- Integrated Gradients ---------------------------------------------------------------------------
def test_integrated_gradients_of_a_prompt_equal_ig_of_the_similarity_by_hand(clip):
    a, model, text = clip
    x, x0 = torch.from_numpy(a.model_input), _black(a)
    for prompt in PROMPTS:
        y = _score(model, text(prompt))
        expected = _per_token(_ig_by_hand(y, x[None], x0[None], 16))
        got = a.explain("integrated_gradients", target=prompt, steps=16)
        assert got.shape == (4, 4)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
        with torch.no_grad():  # completeness: the map sums to y(x) - y(x')
            gap = float(y(x[None])[0] - y(x0[None])[0])
        assert got.sum() == pytest.approx(gap, rel=0.02, abs=1e-4)
        assert a.target_info(prompt).score == pytest.approx(float(y(x[None])[0].detach()), abs=1e-5)
    one, two = (a.explain("integrated_gradients", target=p, steps=16) for p in PROMPTS)
    assert np.abs(one - two).max() > 0.05 * np.abs(one).max()  # the prompt matters


def test_integrated_gradients_with_a_contrast_prompt_are_the_difference(clip):
    a, model, text = clip
    x, x0 = torch.from_numpy(a.model_input), _black(a)
    y = _score(model, text(PROMPTS[0]), text(PROMPTS[1]))
    expected = _per_token(_ig_by_hand(y, x[None], x0[None], 16))
    got = a.explain("integrated_gradients", target=PROMPTS[0], contrast=PROMPTS[1], steps=16)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # IG is linear in the score: the contrast map is the difference of the two prompts' maps
    one, two = (a.explain("integrated_gradients", target=p, steps=16) for p in PROMPTS)
    np.testing.assert_allclose(got, one - two, atol=1e-5 * np.abs(one).max())
    t = a.target_info(PROMPTS[0], PROMPTS[1])
    assert t.label == f"{PROMPTS[0]!r} − {PROMPTS[1]!r}"
    assert t.score == pytest.approx(a.target_info(PROMPTS[0]).score - a.target_info(PROMPTS[1]).score, abs=1e-6)


# --- Grad-CAM ----------------------------------------------------------------------------------------
def _open_clip_cam(model, x: torch.Tensor, y, block: int) -> np.ndarray:
    """max(sum_c w_c A_c, 0) on the patch tokens of open_clip's resblock `block`'s ln_1 output,
    w_c = mean over the patches of dy/dA_c (Selvaraju et al., as grad-cam's ViT tutorial reshapes)."""
    t = model.visual.transformer
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = t.resblocks[block].ln_1.register_forward_hook(hook)
    try:
        y(x[None])[0].backward()
    finally:
        h.remove()
    act, grad = store["a"], store["a"].grad
    if not getattr(t, "batch_first", True):  # (L, N, D) -> (N, L, D)
        act, grad = act.transpose(0, 1), grad.transpose(0, 1)
    act, grad = act[0, 1:].double(), grad[0, 1:].double()  # patches (16, D)
    w = grad.mean(dim=0)
    return (act @ w).clamp(min=0).reshape(4, 4).detach().numpy()


@pytest.mark.parametrize("block", [-1, 0])
def test_grad_cam_of_a_prompt_equals_the_gradient_weighted_activations(clip, block):
    a, model, text = clip
    x = torch.from_numpy(a.model_input)
    for prompt in PROMPTS:
        expected = _open_clip_cam(model, x, _score(model, text(prompt)), block)
        got = a.explain("grad_cam", target=prompt, block=block)
        assert got.shape == (4, 4) and (got >= 0).all()
        assert expected.max() > 0  # something to compare
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())
    expected = _open_clip_cam(model, x, _score(model, text(PROMPTS[0]), text(PROMPTS[1])), block)
    got = a.explain("grad_cam", target=PROMPTS[0], contrast=PROMPTS[1], block=block)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * max(expected.max(), 1e-12))


def test_hf_clip_grad_cam_and_ig_of_a_prompt_through_transformers(hub):
    ref, _, tok = _hf_clip(hub)
    a = vitviz.analyze(_image(3), model="openai/clip-tiny-test")
    x = torch.from_numpy(a.model_input)[None]
    prompt = PROMPTS[0]
    with torch.no_grad():
        text = ref.get_text_features(**tok([prompt], return_tensors="pt"))
    text = (text if torch.is_tensor(text) else text.pooler_output)[0]

    def y(pixels):
        feats = ref.get_image_features(pixel_values=pixels)
        feats = feats if torch.is_tensor(feats) else feats.pooler_output
        return F.cosine_similarity(feats, text[None], dim=-1)

    store = {}
    layer = ref.vision_model.encoder.layers[-1].layer_norm1

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = layer.register_forward_hook(hook)
    try:
        y(x)[0].backward()
    finally:
        h.remove()
    act, grad = store["a"][0, 1:].double(), store["a"].grad[0, 1:].double()
    cam = (act @ grad.mean(dim=0)).clamp(min=0).reshape(4, 4).detach().numpy()
    got = a.explain("grad_cam", target=prompt)
    assert cam.max() > 0
    np.testing.assert_allclose(got, cam, rtol=1e-4, atol=1e-5 * cam.max())
    ig = _per_token(_ig_by_hand(y, x, _black(a)[None], 16))
    np.testing.assert_allclose(a.explain("integrated_gradients", target=prompt, steps=16), ig,
                               rtol=1e-3, atol=1e-4 * np.abs(ig).max())


def test_contrast_prompt_relevance_equals_the_equations(clip):
    """The attention methods take the contrast prompt too: y = cos(image, a) - cos(image, b)."""
    a, model, text = clip
    x = torch.from_numpy(a.model_input)[None]
    emb, attn = _open_clip_explicit(model, x)
    y = F.cosine_similarity(emb, text(PROMPTS[0])[None]) - F.cosine_similarity(emb, text(PROMPTS[1])[None])
    grads = torch.autograd.grad(y[0], attn)
    ref = _relevance_reference(attn, grads).reshape(4, 4)
    got = a.explain("relevance", target=PROMPTS[0], contrast=PROMPTS[1])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


# --- where a prompt makes no sense ------------------------------------------------------------------
def test_a_prompt_where_it_makes_no_sense_says_why(clip):
    a, _, _ = clip
    vit = vitviz.analyze(_image(), model="test_tiny_vit", weights="random")
    swin = vitviz.analyze(_image(), model="test_tiny_swin", weights="random")
    detr = vitviz.analyze(_image(), model="test_tiny_detr", weights="random")
    for method in ("integrated_gradients", "grad_cam", "relevance", "grad_rollout"):
        with pytest.raises(ValueError, match="needs a CLIP model.*has no text tower"):
            vit.explain(method, target="a photo of a dog", **({"steps": 2} if "integ" in method else {}))
    for method in ("integrated_gradients", "grad_cam", "relevance"):
        with pytest.raises(ValueError, match="needs a CLIP model.*not a swin model.*class indices"):
            swin.explain(method, target="a photo of a dog")
        with pytest.raises(ValueError, match="needs a CLIP model.*not a swin model"):
            swin.explain(method, contrast="a photo of a cat")
    with pytest.raises(ValueError, match="needs a CLIP model.*not a DETR model.*object query"):
        detr.explain("relevance", target="a photo of a dog")
    with pytest.raises(ValueError, match="needs a CLIP model.*not a DETR model"):
        detr.target_info("a photo of a dog")
    # on the CLIP model itself: a class index, a class as contrast, a contrast without a prompt
    for method in ("integrated_gradients", "grad_cam", "relevance"):
        with pytest.raises(ValueError, match="no classifier head: its target is a text prompt"):
            a.explain(method, target=3)
        with pytest.raises(ValueError, match="no contrast class"):
            a.explain(method, target="a dog", contrast=2)
        with pytest.raises(ValueError, match="contrast prompt needs a prompt as the target"):
            a.explain(method, contrast="a cat")
        with pytest.raises(ValueError, match="contrast prompt is the target itself"):
            a.explain(method, target="a dog", contrast=" a dog")


def test_a_prompt_target_is_carried_to_the_next_clip_image_only(clip):
    from vitviz.core.vit.state import ViTState

    a, _, _ = clip
    other = vitviz.analyze(_image(5), model=a._vitviz_model)
    plain = vitviz.analyze(_image(), model="test_tiny_vit", weights="random")
    s = ViTState(method="relevance", method_params=(("contrast", "a cat"), ("start_layer", 0), ("target", "a dog")))
    assert dict(s.carried_over(other).method_params)["target"] == "a dog"
    assert dict(s.carried_over(other).method_params)["contrast"] == "a cat"
    back = dict(s.carried_over(plain).method_params)
    assert back["target"] == -1 and back["contrast"] == -1
