"""Token geometry as a property over many image sizes, checked against the real preprocessing."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from vitviz.core.geometry import InputTransform, TokenGrid, resized_size
from vitviz.core.models.registry import Preprocess
from vitviz.core.preprocess import input_transform, prepare

sizes = st.integers(min_value=17, max_value=900)
PRE = [Preprocess("center_crop", 224, resize=256, mean=(0, 0, 0), std=(1, 1, 1)),
       Preprocess("center_crop", 64, resize=72, mean=(0, 0, 0), std=(1, 1, 1)),
       Preprocess("resize", 96, mean=(0, 0, 0), std=(1, 1, 1))]


def grid_for(w, h, pre, patch):
    t = input_transform(w, h, pre)
    return TokenGrid(t.input_h // patch, t.input_w // patch, patch, patch, t)


@settings(max_examples=60, deadline=None)
@given(w=sizes, h=sizes, pre_i=st.integers(0, 2), data=st.data())
def test_token_rect_and_token_at_agree(w, h, pre_i, data):
    grid = grid_for(w, h, PRE[pre_i], 16 if pre_i == 0 else 8)
    r = data.draw(st.integers(0, grid.rows - 1))
    c = data.draw(st.integers(0, grid.cols - 1))
    x0, y0, x1, y1 = grid.rect(r, c)
    assert x1 > x0 and y1 > y0
    # the centre and points just inside the rect's corners map back to the same token
    for fx, fy in [(0.5, 0.5), (0.01, 0.01), (0.99, 0.99), (0.01, 0.99)]:
        x, y = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        if 0 <= x < w and 0 <= y < h:
            assert grid.token_at(x, y) == (r, c)
    # neighbouring tokens tile without gaps or overlaps
    if c + 1 < grid.cols:
        assert np.isclose(grid.rect(r, c + 1)[0], x1)
    if r + 1 < grid.rows:
        assert np.isclose(grid.rect(r + 1, c)[1], y1)


@settings(max_examples=40, deadline=None)
@given(w=sizes, h=sizes)
def test_points_cropped_away_select_nothing(w, h):
    grid = grid_for(w, h, PRE[0], 16)
    vx0, vy0, vx1, vy1 = grid.transform.visible_rect()
    assert np.allclose(grid.extent(), (vx0, vy0, vx1, vy1))
    if vx0 > 1:  # wide image: the left strip was cropped by the center crop
        assert grid.token_at(vx0 / 2, h / 2) is None
    if vy0 > 1:
        assert grid.token_at(w / 2, vy0 / 2) is None
    assert grid.token_at(-1, 0) is None and grid.token_at(w, h - 1) is None


def test_resized_size_matches_torchvision():
    from torchvision.transforms import functional as F

    for w, h in [(300, 200), (200, 300), (257, 999), (1000, 17), (224, 224), (641, 480)]:
        out = F.resize(torch.zeros(1, h, w), [256], antialias=True)
        assert out.shape[-2:] == resized_size(w, h, 256)[::-1]
        out = F.resize(torch.zeros(1, h, w), [800], max_size=1333, antialias=True)
        assert out.shape[-2:] == resized_size(w, h, 800, 1333)[::-1]


@settings(max_examples=25, deadline=None)
@given(w=st.integers(40, 700), h=st.integers(40, 700), pre_i=st.integers(0, 2), data=st.data())
def test_marked_token_lands_on_its_patch_in_the_real_input(w, h, pre_i, data):
    """Paint the central part of token (r, c)'s rect white in the ORIGINAL image, run the real
    preprocessing, and find the white on patch (r, c) of the model input (not transposed, not shifted)."""
    patch = 16 if pre_i == 0 else 8
    pre = PRE[pre_i]
    grid = grid_for(w, h, pre, patch)
    r = data.draw(st.integers(0, grid.rows - 1))
    c = data.draw(st.integers(0, grid.cols - 1))
    x0, y0, x1, y1 = grid.rect(r, c)
    arr = np.zeros((h, w, 3), np.uint8)
    mx, my = (x1 - x0) / 4, (y1 - y0) / 4
    arr[int(np.ceil(y0 + my)):int(y1 - my), int(np.ceil(x0 + mx)):int(x1 - mx)] = 255
    if arr.max() == 0:
        return  # token smaller than a few original pixels (huge upscale): nothing to paint
    x, t = prepare(Image.fromarray(arr), pre)
    assert t == grid.transform and tuple(x.shape[-2:]) == (grid.rows * patch, grid.cols * patch)
    cells = x[0].reshape(grid.rows, patch, grid.cols, patch).mean(dim=(1, 3))
    assert tuple(np.unravel_index(int(cells.argmax()), cells.shape)) == (r, c)


def test_resize_short_pads_bottom_right():
    t = InputTransform.resize_short(640, 480, 800, 1333, pad_to=32)
    assert (t.input_w, t.input_h) == (1088, 800) and t.offset_x == 0 and t.offset_y == 0
    assert np.isclose(t.scale_x, 1066 / 640)
    grid = TokenGrid(t.input_h // 32, t.input_w // 32, 32, 32, t)
    assert grid.token_at(639.9, 479.9) == (24, 33)
