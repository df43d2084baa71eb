"""numpy arrays and torch tensors as images: the same model input as the same pixels saved as a PNG,
and a ValueError naming shape, dtype and what is accepted for anything else."""
import numpy as np
import pytest
import torch
from PIL import Image

import vitviz
from vitviz.core.image import ImageArrayError, ImageLoadError, load_image
from vitviz.core.models.registry import get_spec
from vitviz.core.preprocess import prepare

PRE = get_spec("test_tiny_vit").preprocess


def _rgb(h=37, w=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_input(tmp_path, img: Image.Image):
    path = tmp_path / "x.png"
    img.save(path)
    return prepare(load_image(path), PRE)[0]


def _input(source):
    return prepare(load_image(source), PRE)[0]


def test_uint8_rgb_array_equals_its_png(tmp_path):
    arr = _rgb()
    assert torch.equal(_input(arr), _png_input(tmp_path, Image.fromarray(arr)))


def test_grey_and_single_channel_arrays_equal_their_png(tmp_path):
    grey = _rgb()[..., 0]
    ref = _png_input(tmp_path, Image.fromarray(grey, "L"))
    assert torch.equal(_input(grey), ref)
    assert torch.equal(_input(grey[..., None]), ref)


def test_rgba_alpha_composited_as_for_files(tmp_path):
    rgba = np.concatenate([_rgb(), np.random.default_rng(1).integers(0, 256, (37, 53, 1), dtype=np.uint8)], -1)
    rgba[0, 0, 3] = 0  # fully transparent: white, as files are composited
    assert torch.equal(_input(rgba), _png_input(tmp_path, Image.fromarray(rgba, "RGBA")))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_float_array_is_rounded_to_8_bits_like_its_png(tmp_path):
    f = np.random.default_rng(2).random((30, 40, 3))
    u8 = np.rint(f * 255).astype(np.uint8)  # independent: what saving the floats as a PNG means
    assert torch.equal(_input(f.astype(np.float32)), _png_input(tmp_path, Image.fromarray(u8)))
    # rounding overshoot (e.g. from a resize) is clipped, not refused
    f[0, 0, 0], f[0, 1, 0] = 1 + 1e-6, -1e-6
    assert np.asarray(load_image(f))[0, :2, 0].tolist() == [255, 0]


def test_uint16_grey_equals_its_16_bit_png(tmp_path):
    arr = np.zeros((8, 8), dtype=np.uint16)
    arr[:, 4:] = 4000
    assert torch.equal(_input(arr), _png_input(tmp_path, Image.fromarray(arr)))
    out = np.asarray(load_image(arr))
    assert out[0, 0, 0] == 0 and out[0, 7, 0] == 255  # stretched like the file, not clipped


def test_uint16_colour_keeps_the_high_byte():
    arr = (_rgb().astype(np.uint16) << 8) | 0xFF
    assert np.array_equal(np.asarray(load_image(arr)), _rgb())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16, torch.float64])
def test_tensor_chw_equals_the_array(dtype):
    arr = _rgb()
    t = torch.from_numpy(arr).permute(2, 0, 1)
    t = t if dtype == torch.uint8 else (t.to(torch.float64) / 255).to(dtype)
    assert np.array_equal(np.asarray(load_image(t)), arr)


def test_tensor_grey_and_rgba():
    g = torch.from_numpy(_rgb()[..., 0])
    assert np.array_equal(np.asarray(load_image(g[None]))[..., 1], g.numpy())
    assert np.array_equal(np.asarray(load_image(g))[..., 2], g.numpy())
    rgba = torch.cat([torch.from_numpy(_rgb()).permute(2, 0, 1), torch.full((1, 37, 53), 255, dtype=torch.uint8)])
    assert np.array_equal(np.asarray(load_image(rgba)), _rgb())


def test_tensor_needing_grad_and_non_contiguous():
    t = (torch.from_numpy(_rgb()).permute(2, 0, 1).float() / 255).requires_grad_()
    assert np.array_equal(np.asarray(load_image(t[:, :, ::2])), _rgb()[:, ::2])


def test_analyze_takes_arrays_and_tensors(tmp_path):
    arr = _rgb(80, 90)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    a = vitviz.analyze(arr, model="test_tiny_vit", weights="random")
    b = vitviz.analyze(torch.from_numpy(arr).permute(2, 0, 1), model="test_tiny_vit", weights="random")
    c = vitviz.analyze(str(path), model="test_tiny_vit", weights="random")
    assert np.array_equal(a.model_input, c.model_input) and np.array_equal(b.model_input, c.model_input)
    assert np.array_equal(a.attn, c.attn)


@pytest.mark.parametrize("bad, words", [
    (np.zeros(10, np.uint8), ["(10,)", "uint8", "1-D"]),
    (np.zeros((4, 4, 5), np.uint8), ["(4, 4, 5)", "5 channels"]),
    (np.zeros((0, 4, 3), np.uint8), ["(0, 4, 3)", "empty"]),
    (np.zeros((2, 4, 4, 3), np.uint8), ["4-D"]),
    (np.full((4, 4), np.nan, np.float32), ["float32", "16 NaN or infinite"]),
    (np.array([[0.5, np.inf]]), ["float64", "NaN or infinite"]),
    (np.full((4, 4, 3), 2.0), ["[0, 1]", "span [2, 2]"]),
    (np.full((4, 4, 3), 255.0, np.float32), ["[0, 1]", "divide 0-255 data by 255"]),
    (np.full((4, 4, 3), -0.5), ["[0, 1]"]),
    (np.zeros((4, 4), np.complex64), ["complex64", "complex"]),
    (np.zeros((4, 4, 3), np.int64), ["int64", "astype(np.uint8)"]),
    (np.zeros((4, 4), bool), ["bool"]),
    (torch.zeros(5, 4, 4), ["torch tensor (5, 4, 4)", "5 channels", "channel-first"]),
    (torch.zeros(1, 3, 4, 4), ["(1, 3, 4, 4)", "analyze_many"]),
    (torch.zeros(3, 0, 4), ["(3, 0, 4)", "empty"]),
    (torch.zeros(3, 4, 4, dtype=torch.int32), ["int32", "not accepted"]),
    (torch.full((3, 4, 4), float("nan")), ["(3, 4, 4)", "NaN"]),
    (torch.full((3, 4, 4), 3.0), ["[0, 1]"]),
])
def test_bad_arrays_name_shape_dtype_and_what_is_accepted(bad, words):
    with pytest.raises(ValueError) as info:
        load_image(bad)
    assert isinstance(info.value, ImageArrayError) and isinstance(info.value, ImageLoadError)
    msg = str(info.value)
    assert "accepted:" in msg
    for w in words:
        assert w in msg, msg


def test_other_objects_are_refused_with_a_message():
    with pytest.raises(ImageLoadError, match="not an image; give a path"):
        load_image(12)
