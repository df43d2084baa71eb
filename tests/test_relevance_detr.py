"""DETR relevance (Chefer et al. 2021, encoder-decoder rules) against an independent implementation
written here from the equations, on a hand-written DETR transformer forward that keeps every attention
matrix as an explicit tensor (not vitviz's capture); padding, targets, caching; and on the demo DETR,
the relevance of each detection peaks on its box."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitviz
from vitviz.core.api import get_model
from vitviz.core.capture.detr_run import detr_input, run
from vitviz.core.gradients import attach_model

from .test_detr_api import TINY_DETR, random_image  # noqa: F401 (registers test_tiny_detr)


def hand_mha(m, q_in, k_in, v_in, kpm=None):
    """nn.MultiheadAttention (sequence first) written out: (out (Lq, n, E), A (n, heads, Lq, Lk))."""
    e, h = m.embed_dim, m.num_heads
    dh = e // h
    w, b = m.in_proj_weight, m.in_proj_bias
    q, k, v = (x @ w[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e] for i, x in enumerate((q_in, k_in, v_in)))
    q, k, v = (t.reshape(t.shape[0], t.shape[1], h, dh).permute(1, 2, 0, 3) for t in (q, k, v))
    s = torch.einsum("nhqc,nhkc->nhqk", q, k) / dh ** 0.5
    if kpm is not None:
        s = s.masked_fill(kpm[:, None, None, :], float("-inf"))
    a = torch.softmax(s, dim=-1)
    if a.requires_grad:
        a.retain_grad()
    o = torch.einsum("nhqk,nhkc->nhqc", a, v).permute(2, 0, 1, 3).reshape(q_in.shape[0], q_in.shape[1], e)
    return m.out_proj(o), a


def hand_forward(model, x, mask):
    """vitviz's DETR transformer written out (post-norm, position in queries and keys only):
    (logits (n, Q, classes + 1), {"enc", "self", "cross": [A_l]}, feature mask (n, h, w))."""
    feats, feat_mask, pos = model.backbone(x, mask)  # the CNN and the sine embedding: no attention
    src = model.input_proj(feats).flatten(2).permute(2, 0, 1)  # (hw, n, d)
    pos = pos.flatten(2).permute(2, 0, 1)
    kpm = feat_mask.flatten(1)
    qpos = model.query_embed.weight[:, None].expand(-1, x.shape[0], -1)
    A = {"enc": [], "self": [], "cross": []}
    for lyr in model.transformer.encoder.layers:
        o, a = hand_mha(lyr.self_attn, src + pos, src + pos, src, kpm)
        A["enc"].append(a)
        src = lyr.norm1(src + o)
        src = lyr.norm2(src + lyr.linear2(F.relu(lyr.linear1(src))))
    tgt = torch.zeros_like(qpos)
    for lyr in model.transformer.decoder.layers:
        o, a = hand_mha(lyr.self_attn, tgt + qpos, tgt + qpos, tgt)
        A["self"].append(a)
        tgt = lyr.norm1(tgt + o)
        o, a = hand_mha(lyr.multihead_attn, tgt + qpos, src + pos, src, kpm)
        A["cross"].append(a)
        tgt = lyr.norm2(tgt + o)
        tgt = lyr.norm3(tgt + lyr.linear2(F.relu(lyr.linear1(tgt))))
    logits = model.class_embed(model.transformer.decoder.norm(tgt)).transpose(0, 1)
    return logits, A, feat_mask


def hand_grads(model, x, mask, query):
    """(logits, A, dA) for y = logits[0, query, its best real class], float64 copies of item 0."""
    logits, A, feat_mask = hand_forward(model, x.clone().requires_grad_(True), mask)
    c = int(logits[0, query, :-1].argmax())
    logits[0, query, c].backward()
    return (logits.detach(), {k: [a[0].detach().double() for a in v] for k, v in A.items()},
            {k: [a.grad[0].double() for a in v] for k, v in A.items()}, feat_mask[0])


def ref_relevance(A, G, start=0):
    """Chefer, Gur, Wolf (ICCV 2021), eqs. 6-10, from the paper: (R_ii, R_qq, R_qi)."""
    def abar(a, g):
        return (g * a).clamp(min=0).mean(dim=0)

    def bar(R):  # eqs. 8-9: rownorm(R - I) + I, NaN (a row summing to 0) -> 0
        eye = torch.eye(R.shape[0], dtype=R.dtype)
        res = R - eye
        res = res / res.sum(dim=-1, keepdim=True)
        res[~torch.isfinite(res)] = 0
        return res + eye

    hw, q = A["enc"][0].shape[-1], A["self"][0].shape[-1]
    R_ii = torch.eye(hw, dtype=torch.float64)
    for layer, (a, g) in enumerate(zip(A["enc"], G["enc"])):
        if layer >= start:
            R_ii = R_ii + abar(a, g) @ R_ii  # eq. 6
    R_qq, R_qi = torch.eye(q, dtype=torch.float64), torch.zeros(q, hw, dtype=torch.float64)
    for a_s, g_s, a_c, g_c in zip(A["self"], G["self"], A["cross"], G["cross"]):
        s = abar(a_s, g_s)
        R_qq, R_qi = R_qq + s @ R_qq, R_qi + s @ R_qi  # eqs. 6-7
        R_qi = R_qi + bar(R_qq).T @ abar(a_c, g_c) @ bar(R_ii)  # eq. 10
    return R_ii, R_qq, R_qi


def maxnorm(m):
    m = np.asarray(m, np.float64)
    return m / np.nanmax(np.abs(m))


def as_map(row, feat_mask):
    m = row.reshape(feat_mask.shape).numpy().copy()
    m[feat_mask.numpy()] = np.nan
    return m


@pytest.fixture(scope="module")
def tiny():
    return get_model("test_tiny_detr", "random", cache=False)


@pytest.fixture(scope="module")
def plain(tiny):
    """150 x 90 -> 213 x 128 input -> a 4 x 7 feature map, no padding."""
    a = vitviz.analyze(random_image(150, 90), model=tiny, attention_dtype="float32")
    x, mask, _ = detr_input(a.image, 128, 213)
    return a, x[None], mask[None]


@pytest.fixture(scope="module")
def padded(tiny):
    """Padded to multiples of 96: 288 x 192 input, a 6 x 9 feature map of which 4 x 7 is the image."""
    img = random_image(150, 90, seed=1)
    a = run(tiny, img, attention_dtype=np.float32, pad_to=96)
    attach_model(a, tiny)
    x, mask, _ = detr_input(img, 128, 213, pad_to=96)
    assert a.pad_mask.sum() > 0
    return a, x[None], mask[None]


def test_hand_forward_is_the_model(tiny, padded):
    a, x, mask = padded
    np.testing.assert_array_equal(x[0].numpy(), a.model_input)
    with torch.no_grad():
        ref = tiny.module(x, mask)["pred_logits"]
        logits, _, feat_mask = hand_forward(tiny.module, x, mask)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(feat_mask[0].numpy(), a.pad_mask)


@pytest.mark.parametrize("which", ["plain", "padded"])
def test_gradient_capture_leaves_the_logits(tiny, which, request):
    from vitviz.core.capture.grad_detr import detr_attention_grads, pixel_mask

    a, _, mask = request.getfixturevalue(which)
    np.testing.assert_array_equal(pixel_mask(a), mask[0].numpy())
    logits, p, feat_mask = detr_attention_grads(tiny, a.model_input, pixel_mask(a), 2, 5)
    np.testing.assert_allclose(logits, a.logits, atol=1e-5)  # a.logits: the no-grad capture's
    np.testing.assert_array_equal(feat_mask, a.pad_mask)
    hw = a.pad_mask.size
    assert {k: v.shape for k, v in p.items()} == {"enc_attn": (2, hw, hw), "dec_self": (3, 12, 12),
                                                  "dec_cross": (3, 12, hw), "cross_heads": (3, 4, hw)}
    assert all(v.min() >= 0 and v.max() > 0 for v in p.values())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny.module.modules())


@pytest.mark.parametrize("which", ["plain", "padded"])
def test_relevance_matches_independent_implementation(tiny, which, request):
    a, x, mask = request.getfixturevalue(which)
    for target in (-1, 7):
        q = int(np.argmax(a.best_scores())) if target == -1 else target
        _, A, G, fm = hand_grads(tiny.module, x, mask, q)
        for start in (0, 1):
            ref = as_map(ref_relevance(A, G, start)[2][q], fm)
            got = a.explain("relevance", target=target, start_layer=start)
            assert got.shape == a.feature_shape
            np.testing.assert_array_equal(np.isnan(got), a.pad_mask)
            np.testing.assert_allclose(maxnorm(got), maxnorm(ref), atol=1e-3)


def test_per_head_cross_attention_weights(tiny, plain):
    """'Which heads matter for this detection': each decoder layer's (A * dA)^+ per cross-attention
    head, for the target query, equals the reference's."""
    from vitviz.core.capture.grad_detr import detection_head_maps, detr_products

    a, x, mask = plain
    p, t = detr_products(a, 6)
    _, A, G, _ = hand_grads(tiny.module, x, mask, 6)
    ref = np.stack([(g * w).clamp(min=0)[:, 6].numpy() for w, g in zip(A["cross"], G["cross"])])
    np.testing.assert_allclose(p["cross_heads"] / ref.max(), ref / ref.max(), atol=1e-4)
    maps = detection_head_maps(a, 6)
    assert maps.shape == (3, 4, *a.feature_shape)
    np.testing.assert_array_equal(maps.reshape(3, 4, -1), p["cross_heads"])


def test_encoder_only_is_the_vit_rule(tiny, plain):
    """With the decoder out of the rule, R_ii is the ViT relevance (vitviz.core.analysis.relevance)
    of each cell, and the reference's R_ii."""
    from vitviz.core.analysis.detr_relevance import detr_relevance
    from vitviz.core.analysis.relevance import relevance_row
    from vitviz.core.capture.grad_detr import detr_products

    a, x, mask = plain
    p, t = detr_products(a, 4)
    R_ii = detr_relevance(p)[0]
    # the ViT code, given each encoder layer's Abar as a one-head product (clamping and the mean keep it)
    vit = np.stack([relevance_row(p["enc_attn"][:, None], i) for i in range(R_ii.shape[0])])
    np.testing.assert_allclose(R_ii, vit, rtol=1e-12, atol=1e-12)
    _, A, G, _ = hand_grads(tiny.module, x, mask, 4)
    eye = np.eye(len(R_ii))
    assert np.abs(R_ii - eye).max() > 0  # the encoder did contribute
    np.testing.assert_allclose(maxnorm(R_ii - eye), maxnorm(ref_relevance(A, G)[0].numpy() - eye), atol=1e-3)


def test_padded_cells_get_no_relevance(padded):
    from vitviz.core.analysis.detr_relevance import detr_relevance
    from vitviz.core.capture.grad_detr import detection_head_maps, detr_products

    a, _, _ = padded
    for target in (-1, 0, 5):
        p, t = detr_products(a, target)
        r_qi = detr_relevance(p)[2]
        pad = a.pad_mask.reshape(-1)
        assert np.all(r_qi[:, pad] == 0) and r_qi[t.index, ~pad].max() > 0
        m = a.explain("relevance", target=target)
        assert np.isnan(m[a.pad_mask]).all() and np.isfinite(m[~a.pad_mask]).all()
        heads = detection_head_maps(a, target)
        assert np.isnan(heads[..., a.pad_mask]).all() and np.isfinite(heads[..., ~a.pad_mask]).all()


def test_two_detections_differ(plain):
    a, _, _ = plain
    top2 = np.argsort(-a.best_scores())[:2]
    m0, m1 = (maxnorm(a.explain("relevance", target=int(q))) for q in top2)
    assert np.abs(m0 - m1).max() > 1e-2


@pytest.mark.parametrize("group", ["enc", "self", "cross"])
def test_layer_order_guard(tiny, plain, group):
    """Pairing one layer's attention with another layer's gradient must fail the comparison (the same
    1e-3 tolerance the true pairing passes; decoder self-attention moves this random model's map least)."""
    a, x, mask = plain
    _, A, G, fm = hand_grads(tiny.module, x, mask, 3)
    got = maxnorm(a.explain("relevance", target=3))
    np.testing.assert_allclose(got, maxnorm(as_map(ref_relevance(A, G)[2][3], fm)), atol=1e-3)
    swapped = {**G, group: G[group][::-1]}
    assert np.abs(got - maxnorm(as_map(ref_relevance(A, swapped)[2][3], fm))).max() > 2e-3


def test_backward_runs_once_per_detection(plain, monkeypatch):
    import vitviz.core.capture.grad_detr as gd

    a, _, _ = plain
    calls = []
    real = gd.detr_attention_grads
    monkeypatch.setattr(gd, "detr_attention_grads", lambda *args, **kw: calls.append(args[3:]) or real(*args, **kw))
    first = a.explain("relevance", target=9)
    again = a.explain("relevance", target=9)
    a.explain("relevance", target=9, start_layer=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    a.explain("relevance", target=10)
    assert len(calls) == 2


def test_target_is_the_detections_class_logit(plain):
    a, _, _ = plain
    info = a.target_info()
    q = int(np.argmax(a.best_scores()))
    c = int(np.argmax(a.logits[q, :-1]))
    assert (info.index, info.cls) == (q, c)
    assert info.score == pytest.approx(float(a.logits[q, c]))
    assert info.probability == pytest.approx(float(a.best_scores()[q]))
    assert info.label == f"query {q}: {a.class_name(c)}"
    no_object = a.logits.shape[1] - 1
    assert all(a.target_info(k).cls != no_object for k in range(a.num_queries))


def test_clear_errors(plain):
    a, _, _ = plain
    with pytest.raises(ValueError, match="not an object query"):
        a.explain("relevance", target=12)
    with pytest.raises(ValueError, match="contrast is for classifiers"):
        a.explain("relevance", target=1, contrast=2)
    with pytest.raises(ValueError, match="start_layer 2 is out of range"):
        a.explain("relevance", start_layer=2)
    with pytest.raises(ValueError, match="not available for detr"):  # no class token to roll out from
        a.explain("grad_rollout")
    assert "relevance" in [m.name for m in vitviz.methods("detr")]


def peak_in_box(a, m, box):
    r, c = np.unravel_index(np.nanargmax(m), m.shape)
    x0, y0, x1, y1 = a.grid.rect(r, c)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def demo_rate(seeds):
    from vitviz.demo.scenes import detection_scene

    lm = get_model("demo_detr", "pretrained")
    assert lm.trained
    scenes = hits = dets = 0
    for seed in seeds:
        img, _, _ = detection_scene(seed, size=128)
        a = vitviz.analyze(img, model=lm)
        found = a.detections(0.7)
        ok = [peak_in_box(a, a.explain("relevance", target=d.query), d.box) for d in found]
        scenes += bool(found) and all(ok)
        hits, dets = hits + sum(ok), dets + len(ok)
    return scenes / len(seeds), hits / max(dets, 1)


def test_demo_detr_relevance_peaks_on_each_box():
    """Two held-out scenes, fast; the rate over 40 is the slow test below."""
    from vitviz.demo.scenes import TEST_SEED

    scene_rate, det_rate = demo_rate([TEST_SEED + 100, TEST_SEED + 101])
    assert scene_rate == 1.0 and det_rate == 1.0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~1 min on two idle cores; ten times that when they are shared
def test_demo_detr_relevance_peaks_on_each_box_rate():
    """Every detection (score > 0.7) of a scene has its relevance maximum inside its own box, for at
    least 90% of 40 held-out scenes (measured over 60: 58 scenes, 246 of 248 detections)."""
    from vitviz.demo.scenes import TEST_SEED

    scene_rate, det_rate = demo_rate(range(TEST_SEED + 100, TEST_SEED + 140))
    assert scene_rate >= 0.9 and det_rate >= 0.9, (scene_rate, det_rate)
