"""The step-by-step attention walk-through's numbers against the models' own computation: q, k, v
from the block's projections applied to its input as a hook in this test sees it, softmax of the
logits (+ Swin's bias and mask) against the captured attention row, output = weights @ v."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitviz
from vitviz.core.gradients import model_of

from . import swin_helpers  # noqa: F401 (registers test_tiny_swin, test_tiny_swin_v2)
from .test_detr_api import TINY_DETR, random_image  # noqa: F401 (registers test_tiny_detr)

TOL = 1e-6


def np64(t):
    return t.detach().double().numpy()


def forward_seeing(model, module, x, pre=False):
    """Run `model` on x with one hook on `module`: its output (or its (args, kwargs) if pre)."""
    seen = {}
    if pre:
        h = module.register_forward_pre_hook(lambda m, a, k: seen.update(args=a, kwargs=k), with_kwargs=True)
    else:
        h = module.register_forward_hook(lambda m, a, o: seen.update(out=o))
    try:
        with torch.no_grad():
            model(torch.as_tensor(x)[None])
    finally:
        h.remove()
    return seen


def independent_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def vit():
    return vitviz.analyze(random_image(90, 70), model="test_tiny_vit", weights="random", attention_dtype="float32")


@pytest.mark.parametrize("layer,head,query", [(0, 0, "cls"), (1, 2, (1, 2)), (2, 3, (3, 0))])
def test_vit_steps_are_the_blocks_own_computation(vit, layer, head, query):
    model = model_of(vit).module
    s = vit.attention_steps(layer, head, query)
    block = model.encoder.layers[layer]
    y = forward_seeing(model, block.ln_1, vit.model_input)["out"][0]  # (N, D) normalised block input
    d = block.self_attention.embed_dim
    dh = d // block.self_attention.num_heads
    q, k, v = np64(F.linear(y, block.self_attention.in_proj_weight, block.self_attention.in_proj_bias)
                   ).reshape(len(y), 3, -1)[:, :, head * dh:(head + 1) * dh].transpose(1, 0, 2)
    qi = vit.token_index(query)
    assert s.d == dh and s.k.shape == (vit.num_tokens, dh)
    np.testing.assert_allclose(s.q, q[qi], atol=TOL)
    np.testing.assert_allclose(s.k, k, atol=TOL)
    np.testing.assert_allclose(s.v, v, atol=TOL)
    np.testing.assert_allclose(s.logits, k @ q[qi] / np.sqrt(dh), atol=TOL)
    np.testing.assert_allclose(independent_softmax(s.logits), vit.attn[layer, head, qi], atol=TOL)
    np.testing.assert_allclose(s.weights, vit.attn[layer, head, qi], atol=TOL)
    np.testing.assert_allclose(s.output, s.weights @ v, atol=TOL)
    # the sublayer and the residual around it, as the model's own modules computed them
    attn_out = forward_seeing(model, block.self_attention, vit.model_input)["out"][0][0, qi]
    x_in = forward_seeing(model, block, vit.model_input, pre=True)["args"][0][0, qi]
    np.testing.assert_allclose(s.attention_output, np64(attn_out), atol=1e-5)
    np.testing.assert_allclose(s.residual_in, np64(x_in), atol=1e-5)
    np.testing.assert_allclose(s.residual_out, np64(x_in + attn_out), atol=1e-5)
    # the head's share of the output projection: summed over heads (+ bias) it is the sublayer
    heads = [vit.attention_steps(layer, h, query).head_projection for h in range(vit.num_heads)]
    np.testing.assert_allclose(np.sum(heads, 0) + np64(block.self_attention.out_proj.bias), s.attention_output,
                               atol=1e-5)


def test_vit_top_k_outside_mass_and_patch_embedding(vit):
    model = model_of(vit).module
    s = vit.attention_steps(2, 1, (2, 3))
    patch_weights = s.weights[vit.num_prefix_tokens:]
    top = s.top_k(5)
    assert list(top - vit.num_prefix_tokens) == list(np.argsort(-patch_weights, kind="stable")[:5])
    assert s.weight_outside(5) == pytest.approx(1 - s.weights[top].sum())
    i, w = s.smallest_weight()
    assert 0 < w == s.weights.min()  # softmax never returns exactly 0 here
    np.testing.assert_allclose(s.output_from(np.arange(len(s.weights))), s.output, atol=1e-12)
    assert np.isnan(s.grid_map(s.weights)).sum() == 0 and s.grid_map(s.weights).shape == vit.grid.shape
    # patch embedding: pixels -> conv_proj -> + position -> the token entering layer 0
    e = s.embedding
    r, c = 2, 3
    p = model.patch_size
    np.testing.assert_array_equal(e.pixels, vit.model_input[:, r * p:(r + 1) * p, c * p:(c + 1) * p].transpose(1, 2, 0))
    conv = forward_seeing(model, model.conv_proj, vit.model_input)["out"][0, :, r, c]
    np.testing.assert_allclose(e.embedding, np64(conv), atol=1e-5)
    token0 = forward_seeing(model, model.encoder.layers[0], vit.model_input, pre=True)["args"][0][0]
    qi = vit.token_index((r, c))
    np.testing.assert_allclose(e.token, np64(token0[qi]), atol=1e-5)
    np.testing.assert_allclose(e.embedding + e.position, e.token, atol=1e-5)
    np.testing.assert_allclose(e.position, np64(model.encoder.pos_embedding[0, qi]), atol=1e-6)
    assert e.linear and set(e.norms()) == {"pixels", "embedding", "position", "token"}
    assert vit.attention_steps(0, 0, "cls").embedding is None


@pytest.fixture(scope="module", params=["test_tiny_swin", "test_tiny_swin_v2"])
def swin(request):
    return vitviz.analyze(random_image(90, 80), model=request.param, weights="random", attention_dtype="float32")


def window_of_test(x, window, shift, r, c):
    """torchvision's pad, roll and partition written out: the (N, C) tokens of the window holding
    image token (r, c), and the token's slot in it."""
    _, h, w, ch = x.shape
    mh, mw = window
    hp, wp = -(-h // mh) * mh, -(-w // mw) * mw
    xp = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    xp = torch.roll(xp, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    rr, rc = (r - shift[0]) % hp, (c - shift[1]) % wp
    wr, wc = rr // mh * mh, rc // mw * mw
    return xp[0, wr:wr + mh, wc:wc + mw].reshape(mh * mw, ch), (rr % mh) * mw + rc % mw


@pytest.mark.parametrize("stage,block,head,token", [(0, 0, 1, (3, 4)), (0, 1, 0, (17, 17)), (1, 1, 1, (8, 0)),
                                                    (2, 1, 3, (4, 1)), (3, 0, 2, (1, 2))])
def test_swin_steps_are_the_blocks_own_computation(swin, stage, block, head, token):
    model = model_of(swin).module
    b = swin.block(stage, block)
    from vitviz.core.capture.swin import swin_blocks

    module = swin_blocks(model)[b.index][2]
    s = swin.attention_steps(stage, block, head, token)
    x = forward_seeing(model, module, swin.model_input, pre=True)["args"][0]  # (1, H, W, C) attention input
    xw, slot = window_of_test(x, b.window, b.shift, *token)
    ch = x.shape[-1]
    dh = ch // module.num_heads
    bias = module.qkv.bias.clone()
    if swin.version == 2:
        bias[ch:2 * ch] = 0
    q, k, v = np64(F.linear(xw, module.qkv.weight, bias)).reshape(len(xw), 3, -1)[:, :, head * dh:(head + 1) * dh
                                                                                   ].transpose(1, 0, 2)
    np.testing.assert_allclose(s.q, q[slot], atol=TOL)
    np.testing.assert_allclose(s.k, k, atol=TOL)
    np.testing.assert_allclose(s.v, v, atol=TOL)
    window = swin.window_of(stage, block, *token).window
    row = swin.attn[b.index][window, head, slot]
    np.testing.assert_allclose(independent_softmax(s.logits + s.bias + s.mask), row, atol=TOL)
    np.testing.assert_allclose(s.weights, row, atol=TOL)
    np.testing.assert_allclose(s.output, s.weights @ v, atol=TOL)
    out = forward_seeing(model, module, swin.model_input)["out"][0, token[0], token[1]]
    np.testing.assert_allclose(s.attention_output, np64(out), atol=1e-5)
    if swin.version == 1:
        np.testing.assert_allclose(s.logits, k @ q[slot] / np.sqrt(dh), atol=TOL)


def test_swin_mask_term_where_the_shifted_window_wraps(swin):
    # stage 0 block 1 is shifted by 2 on an 18 x 18 map padded to 20: token (17, 17) shares its
    # window with tokens rolled in from the top/left, which the mask keeps apart
    s = swin.attention_steps(0, 1, 0, (17, 17))
    masked = s.mask == -100
    assert masked.any() and (~masked).any() and set(np.unique(s.mask)) == {0.0, -100.0}
    assert s.weights[masked].max() < 1e-30 < s.weights[masked].min() * 1e20  # tiny, but not 0
    assert not swin.attention_steps(0, 0, 0, (17, 17)).mask.any()  # the regular block masks nothing
    assert s.bias.std() > 0


@pytest.fixture(scope="module")
def detr():
    from vitviz.core.api import get_model
    from vitviz.core.capture.detr_run import run
    from vitviz.core.gradients import attach_model

    lm = get_model("test_tiny_detr", "random", cache=False)
    a = run(lm, random_image(150, 90, seed=1), attention_dtype=np.float32, pad_to=96)  # padded: masked keys
    attach_model(a, lm)
    return a


@pytest.mark.parametrize("layer,head,query", [(0, 0, 0), (1, 3, 5), (2, 1, 11)])
def test_detr_cross_attention_steps(detr, layer, head, query):
    model = model_of(detr).module
    from vitviz.core.capture.detr_run import detr_input

    x, pixel_mask, _ = detr_input(random_image(150, 90, seed=1), 128, 213, pad_to=96)  # as the fixture ran it
    assert np.array_equal(x.numpy(), detr.model_input) and pixel_mask.any()
    mha = model.transformer.decoder.layers[layer].multihead_attn
    seen = {}
    hook = mha.register_forward_pre_hook(lambda m, a, k: seen.update(args=a, kwargs=k), with_kwargs=True)
    try:
        with torch.no_grad():
            model(x[None], pixel_mask[None])
    finally:
        hook.remove()
    qin, kin = (t[:, 0] for t in seen["args"][:2])
    vin = seen["kwargs"]["value"][:, 0]
    d = mha.embed_dim
    dh = d // mha.num_heads
    sl = slice(head * dh, (head + 1) * dh)
    w, b = mha.in_proj_weight, mha.in_proj_bias
    s = detr.attention_steps(layer, head, query)
    q = np64(F.linear(qin[query], w[:d], b[:d])[sl])
    np.testing.assert_allclose(s.q, q, atol=TOL)
    k = np64(F.linear(kin, w[d:2 * d], b[d:2 * d])[:, sl])
    v = np64(F.linear(vin, w[2 * d:], b[2 * d:])[:, sl])
    np.testing.assert_allclose(s.k, k, atol=TOL)
    np.testing.assert_allclose(s.v, v, atol=TOL)
    np.testing.assert_allclose(s.logits, k @ q / np.sqrt(dh), atol=TOL)
    row = detr.dec_cross[layer, head, query]
    pad = seen["kwargs"]["key_padding_mask"][0].numpy()
    assert pad.any() and np.array_equal(~pad, s.valid)
    np.testing.assert_allclose(s.weights, row, atol=TOL)
    np.testing.assert_allclose(independent_softmax(np.where(pad, -np.inf, s.logits)), row, atol=TOL)
    assert np.all(s.weights[pad] == 0)  # nn.MultiheadAttention's padding mask gives exactly 0
    np.testing.assert_allclose(s.output, s.weights @ v, atol=TOL)
    with pytest.raises(ValueError, match="cross"):
        detr.attention_steps(layer, head, query, kind="self")
