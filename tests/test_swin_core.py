"""Swin core: the captured window attention is exactly the model's, and the window geometry
(padding, roll, 9-region mask, patch merging) agrees with torchvision's own modules.

Most tests use tiny real torchvision Swin models (tests/swin_helpers.py); swin_t is built once."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.models import swin_transformer as tvs

import vitviz
from tests.swin_helpers import analysis_of, recompute_output
from vitviz.core.analysis import windows as win
from vitviz.core.api import get_model
from vitviz.core.capture.swin import attention_of, capture_window_attention, forward_with_capture, swin_blocks

MASKED_MAX, ALLOWED_MIN = 1e-25, 1e-20  # masked logits get -100; v2's logits span at most ~36


@pytest.fixture(scope="module", params=["test_tiny_swin", "test_tiny_swin_v2"], ids=["v1", "v2"])
def tiny(request):
    return get_model(request.param, "random", cache=False).module


@pytest.fixture(scope="module")
def tiny_analysis(tiny):
    return analysis_of(tiny, 72, 72)


@pytest.fixture(scope="module")
def swin_t():
    loaded = get_model("swin_t", "random", cache=False)
    torch.nn.init.normal_(loaded.module.head.weight, std=0.2)
    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (180, 240, 3), dtype=np.uint8), "RGB")
    return loaded, vitviz.analyze(img, loaded)


def _masked_and_allowed(attn, layout):
    mask = np.broadcast_to(win.window_mask(layout)[:, None], attn.shape)  # (windows, heads, N, N)
    return attn[mask], attn[~mask]


# --- capture is exact ------------------------------------------------------------------------
def test_capture_leaves_logits_bit_identical(tiny):
    x = torch.randn(2, 3, 72, 72)
    with torch.no_grad():
        plain = tiny(x)
    cap = forward_with_capture(tiny, x, np.float32)
    assert plain.abs().max() > 0.1  # a ~zero head would prove nothing
    np.testing.assert_array_equal(cap.logits, plain[0].numpy())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny.modules())
    assert torch._C._len_torch_function_stack() == 0
    # windows are batch-major: item 0 of a batch is what item 0 alone gives
    alone = forward_with_capture(tiny, x[:1], np.float32)
    for a, b in zip(cap.attn, alone.attn):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_failed_forward_leaves_no_mode_or_hooks(tiny):
    with pytest.raises(RuntimeError), torch.no_grad(), capture_window_attention(tiny):
        tiny(torch.randn(1, 4, 72, 72))  # wrong channel count: fails in the stem
    with pytest.raises(RuntimeError), torch.no_grad(), capture_window_attention(tiny):
        swin_blocks(tiny)[3][2](torch.randn(1, 9, 9, 7))  # fails inside an attention module
    assert torch._C._len_torch_function_stack() == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny.modules())


def test_rows_sum_to_one_and_masked_pairs_get_no_weight(tiny_analysis):
    a = tiny_analysis
    assert [b.shifted for b in a.blocks] == [False, True, False, True, False, False, False, False]
    for b in a.blocks:
        attn = a.window_attention(b.stage, b.block)
        assert attn.shape == (b.num_windows, b.heads, 25, 25)
        np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
        masked, allowed = _masked_and_allowed(attn, b.layout)
        assert masked.size > 0 if b.shifted else masked.size == 0
        assert masked.size == 0 or masked.max() < MASKED_MAX
        assert allowed.min() > ALLOWED_MIN


def test_recomputed_block_output_matches_the_module(tiny):
    """weights @ v, proj, reverse partition and roll (through window_token_coords) gives back each
    attention module's output: regular, shifted, padded and shift-dropped blocks, v1 and v2."""
    seen = []

    def keep(module, args, out):  # returns None: leaves the output alone
        seen.append((args[0], out))

    hooks = [m.register_forward_hook(keep) for _, _, m in swin_blocks(tiny)]
    try:
        cap = forward_with_capture(tiny, torch.randn(1, 3, 72, 72), np.float32)
    finally:
        for h in hooks:
            h.remove()
    for (x, out), b, attn, (_, _, m) in zip(seen, cap.blocks, cap.attn, swin_blocks(tiny)):
        with torch.no_grad():
            torch.testing.assert_close(recompute_output(m, x, attn, b.layout), out[0], atol=1e-5, rtol=1e-4)


def test_float16_by_default_float32_on_request():
    img = Image.new("RGB", (90, 80), (120, 30, 200))
    a16 = vitviz.analyze(img, "test_tiny_swin", weights="random")
    a32 = vitviz.analyze(img, "test_tiny_swin", weights="random", attention_dtype="float32")
    assert a16.family == "swin" and a16.attn[0].dtype == np.float16 and a32.attn[0].dtype == np.float32
    assert a16.window_attention(0, 1).dtype == np.float32
    np.testing.assert_allclose(a16.window_attention(0, 1), a32.window_attention(0, 1), atol=1e-3)
    assert a16.model_input.shape == (3, 72, 72) and a16.input_image().shape == (72, 72, 3)
    assert len(a16.top_predictions(3)) == 3 and a16.class_names is None


def test_swin_t_blocks_and_bit_identical_logits(swin_t):
    loaded, a = swin_t
    with torch.no_grad():
        plain = loaded.module(torch.from_numpy(a.model_input)[None])
    np.testing.assert_array_equal(a.logits, plain[0].numpy())
    assert a.num_stages == 4 and a.version == 1 and a.attn[0].dtype == np.float16
    assert [a.num_blocks(s) for s in range(4)] == [2, 2, 6, 2]
    assert [a.stage_grid(s).shape for s in range(4)] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert a.block(0, 1).shift == (3, 3) and a.block(2, 3).shift == (3, 3)
    for b in a.stage_blocks(3):  # window = feature map: torchvision drops the shift
        assert (b.shift, b.window, b.feature_size) == ((0, 0), (7, 7), (7, 7))
        assert b.configured_shift == ((3, 3) if b.block == 1 else (0, 0))
        assert b.padding == (0, 0) and b.num_windows == 1 and b.heads == 24
    assert a.window_attention(0, 0).shape == (64, 3, 49, 49)
    assert a.relative_position_bias(3, 1).shape == (24, 13, 13)
    summary = a.attention_summary()
    assert summary.shape == (7, 7) and abs(summary.sum() - 1) < 1e-3
    assert a.grid.cell_w == 4 and len(a.top_predictions(5)) == 5


# --- relative position bias ------------------------------------------------------------------
def test_relative_position_bias_by_offset(tiny, tiny_analysis):
    a = tiny_analysis
    for b, (_, _, m) in zip(a.blocks, swin_blocks(tiny)):
        np.testing.assert_array_equal(win.relative_position_index(m.window_size), m.relative_position_index.numpy())
        table = a.relative_position_bias(b.stage, b.block)  # (heads, 9, 9)
        with torch.no_grad():
            if isinstance(m, tvs.ShiftedWindowAttentionV2):
                expected = 16 * torch.sigmoid(m.cpb_mlp(m.relative_coords_table))[0].permute(2, 0, 1)
            else:
                expected = m.relative_position_bias_table.detach().reshape(9, 9, -1).permute(2, 0, 1)
            pairs = m.get_relative_position_bias()[0]
        np.testing.assert_allclose(table, expected.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(table.reshape(b.heads, -1)[:, m.relative_position_index.numpy()],
                                      pairs.reshape(b.heads, -1).numpy())
    # the offset convention, spelled out: pair (query, key) reads [dy + 4, dx + 4], (dy, dx) = query - key
    table = np.random.default_rng(0).random((1, 9, 9)).astype(np.float32)
    pairs = np.empty((1, 25, 25), np.float32)
    for q in range(25):
        for k in range(25):
            pairs[0, q, k] = table[0, q // 5 - k // 5 + 4, q % 5 - k % 5 + 4]
    np.testing.assert_array_equal(win.bias_table(pairs, (5, 5)), table)


# --- geometry against torchvision ------------------------------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True)
@given(h=st.integers(1, 13), w=st.integers(1, 13), mh=st.integers(2, 6), mw=st.integers(2, 6),
       data=st.data(), v2=st.booleans())
def test_window_geometry_matches_a_real_attention_module(h, w, mh, mw, data, v2):
    """Any feature size (padding), window and shift, incl. one axis shifted or shift dropped."""
    sh, sw = data.draw(st.integers(0, mh - 1)), data.draw(st.integers(0, mw - 1))
    torch.manual_seed(h * 100 + w)
    cls = tvs.ShiftedWindowAttentionV2 if v2 else tvs.ShiftedWindowAttention
    module = cls(4, [mh, mw], [sh, sw], num_heads=2).eval()
    x = torch.randn(1, h, w, 4)
    out, cap = attention_of(module, x)
    layout = cap.layout
    assert layout == win.WindowLayout.for_block(h, w, (mh, mw), (sh, sw))
    with torch.no_grad():
        torch.testing.assert_close(recompute_output(module, x, cap.attn, layout), out[0], atol=1e-5, rtol=1e-4)
    masked, allowed = _masked_and_allowed(cap.attn, layout)
    assert masked.size == 0 or masked.max() < MASKED_MAX
    assert allowed.min() > ALLOWED_MIN
    # slots <-> coordinates are inverse; rects and partition describe the same windows
    coords = win.window_token_coords(layout)
    windows, index = win.slot_maps(layout)
    n = (layout.num_windows, mh * mw)
    np.testing.assert_array_equal(windows[coords[..., 0], coords[..., 1]], np.indices(n)[0])
    np.testing.assert_array_equal(index[coords[..., 0], coords[..., 1]], np.indices(n)[1])
    partition = win.window_partition(layout)
    for wdx in range(layout.num_windows):
        covered = np.zeros((h, w), bool)
        for r0, c0, r1, c1 in win.window_rects(layout, wdx):
            covered[r0:r1, c0:c1] = True
        np.testing.assert_array_equal(covered, partition == wdx)
    slot = win.window_slot(layout, h - 1, 0)
    assert (partition[h - 1, 0], tuple(coords[slot.window, slot.index])) == (slot.window, (h - 1, 0))
    regions = win.mask_regions(layout)
    assert regions.shape == (h, w) and (layout.shifted or not regions.any())


@pytest.mark.parametrize("height, width", [(72, 72), (44, 92), (60, 28), (20, 36)])
def test_window_of_tokens_and_maps_agree(tiny, height, width):
    """window_of, window_tokens, window_rects, window_partition, attention_map and head_maps describe
    the same windows, over feature sizes that torchvision pads and where it drops the shift."""
    a = analysis_of(tiny, height, width)
    rng = np.random.default_rng(height * width)
    for b in a.blocks:
        rows, cols = a.stage_grid(b.stage).shape
        assert b.feature_size == (rows, cols)
        attn = a.window_attention(b.stage, b.block)
        partition = a.window_partition(b.stage, b.block)
        coords = a.token_coords(b.stage, b.block)
        hm = a.head_maps(b.stage, (0, 0))
        tokens = {(0, 0), (rows - 1, cols - 1)} | {(int(rng.integers(rows)), int(rng.integers(cols))) for _ in range(4)}
        for r, c in tokens:
            slot = a.window_of(b.stage, b.block, r, c)
            toks = a.window_tokens(b.stage, b.block, r, c)
            assert (r, c) in set(map(tuple, toks)) and tuple(coords[slot.window, slot.index]) == (r, c)
            assert {a.window_of(b.stage, b.block, *t).window for t in toks} == {slot.window}
            assert len(toks) == (partition == slot.window).sum()
            idx = [a.window_of(b.stage, b.block, *t).index for t in toks]
            for head, direction, expected in [(1, "from", attn[slot.window, 1, slot.index, idx]),
                                              ("max", "to", attn[slot.window, :, idx, slot.index].max(1))]:
                m = a.attention_map(b.stage, b.block, head, (r, c), direction)
                assert m.shape == (rows, cols) and np.isfinite(m).sum() == len(toks)
                np.testing.assert_array_equal(m[toks[:, 0], toks[:, 1]], expected)
            covered = np.zeros((rows, cols), bool)
            for r0, c0, r1, c1 in a.window_rects(b.stage, b.block, r, c):
                covered[r0:r1, c0:c1] = True
            np.testing.assert_array_equal(covered, partition == slot.window)
        np.testing.assert_array_equal(hm[b.block, 0], a.attention_map(b.stage, b.block, 0, (0, 0)))


def test_shifted_window_wraps_around_the_border(tiny_analysis):
    a = tiny_analysis  # stage 0: 18x18 padded to 20, shift 2: token (0, 0) shares a window with (17, 17)
    toks = set(map(tuple, a.window_tokens(0, 1, 0, 0)))
    assert toks == {(r, c) for r in (17, 0, 1) for c in (17, 0, 1)}
    assert sorted(a.window_rects(0, 1, 0, 0)) == [(0, 0, 2, 2), (0, 17, 2, 18), (17, 0, 18, 2), (17, 17, 18, 18)]
    m = a.attention_map(0, 1, "mean", (0, 0))
    assert np.isfinite(m[17, 17]) and np.isnan(m[5, 5])
    # the four corners are four mask regions: across them the weight is ~0, within ~1
    regions = a.mask_regions(0, 1)
    assert len({regions[r, c] for r, c in [(0, 0), (0, 17), (17, 0), (17, 17)]}) == 4
    assert m[17, 17] < MASKED_MAX and abs(np.nansum(m[:2, :2]) - 1) < 1e-5
    assert set(np.unique(regions)) == set(range(9)) and not a.mask_regions(0, 0).any()
    # regular layout: (0, 0) sits in the top-left 5x5 window
    assert set(map(tuple, a.window_tokens(0, 0, 0, 0))) == {(r, c) for r in range(5) for c in range(5)}
    np.testing.assert_array_equal(a.window_partition(0, 0, shifted=True), a.window_partition(0, 1))
    np.testing.assert_array_equal(a.window_partition(0, 1, shifted=False), a.window_partition(0, 0))
    # stage 2: window = feature map, so even "shifted" is the one regular window
    assert not a.window_partition(2, 1, shifted=True).any()


def test_attention_summary_is_the_mean_attention_received(tiny_analysis):
    a = tiny_analysis
    rows, cols = a.stage_grid(-1).shape  # 3x3, padded to 5x5: part of the attention goes to padding
    expected = np.zeros((rows, cols))
    for b in a.stage_blocks(-1):
        for r in range(rows):
            for c in range(cols):
                expected += np.nan_to_num(a.attention_map(-1, b.block, "mean", (r, c))) / (rows * cols)
    summary = a.attention_summary()
    np.testing.assert_allclose(summary, expected / a.num_blocks(-1), rtol=1e-5, atol=1e-7)
    assert summary.sum() < 0.999
    assert abs(a.attention_summary(stage=2).sum() - 1) < 1e-5  # 5x5: no padding


# --- patch merging ---------------------------------------------------------------------------
def _merged_coords(merge, height: int, width: int) -> np.ndarray:
    """Feed (row + 1, col + 1) through a real PatchMerging(V2) and read back what its gather put in
    each merged token's 4 channel groups: (H', W', 4, 2), -1 where it was padding."""
    dim = merge.dim
    x = torch.zeros(1, height, width, dim)
    x[0, :, :, 0] = torch.arange(height)[:, None] + 1
    x[0, :, :, 1] = torch.arange(width)[None, :] + 1
    seen = {}
    h = merge.reduction.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    if isinstance(merge, tvs.PatchMerging):  # v1 normalises before reducing: read the norm's input
        h.remove()
        h = merge.norm.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        merge(x)
    h.remove()
    gathered = seen["x"][0].reshape(*seen["x"].shape[1:3], 4, dim)[..., :2]
    return gathered.numpy().astype(int) - 1


def test_merge_trace_follows_patchmerging(tiny, tiny_analysis):
    a = tiny_analysis
    merges = [m for m in tiny.features if isinstance(m, (tvs.PatchMerging, tvs.PatchMergingV2))]
    for s, merge in enumerate(merges, start=1):  # stage s-1 -> s: 18 -> 9 -> 5 (odd: padded) -> 3
        prev = a.stage_grid(s - 1)
        real = _merged_coords(merge, prev.rows, prev.cols)
        assert real.shape[:2] == a.stage_grid(s).shape
        for r, c in [(0, 0), (real.shape[0] - 1, real.shape[1] - 1), (1, real.shape[1] // 2)]:
            parts = [p if p[0] < prev.rows and p[1] < prev.cols else (-1, -1) for p in win.merge_parts(r, c)]
            np.testing.assert_array_equal(real[r, c], parts)
    for x, y in [(0.5, 0.5), (70.9, 3.2), (37.0, 50.0), (71.9, 71.9)]:
        steps = a.merge_trace(x, y)
        assert [step.stage for step in steps] == [0, 1, 2, 3]
        for step in steps:
            assert step.token == a.stage_grid(step.stage).token_at(x, y)
        for prev, step in zip(steps, steps[1:]):
            assert step.parts[step.via] == prev.token and len(step.parts) == 4
            real = _merged_coords(merges[step.stage - 1], *a.stage_grid(prev.stage).shape)[step.token]
            assert [p or (-1, -1) for p in step.parts] == [tuple(v) for v in real]
    assert a.merge_trace(-1, 5) == [] and a.merge_trace(5, 72) == []
