"""Image loading: every mode to RGB, EXIF orientation, first frame, clear errors."""
import io

import numpy as np
import pytest
from PIL import Image

from vitviz.core import image as image_mod
from vitviz.core.image import ImageLoadError, load_image


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16", "1", "RGB", "I", "F"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    img = Image.new(mode, (40, 30))
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    path = _save(img, tmp_path / f"x.{fmt.lower()}", format=fmt)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_palette_with_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    path = _save(img, tmp_path / "p.png", transparency=0)
    assert load_image(path).getpixel((5, 5)) == (255, 255, 255)


def test_16bit_greyscale_keeps_its_range(tmp_path):
    arr = np.zeros((8, 8), dtype=np.uint16)
    arr[:, 4:] = 4000  # a dark 16-bit image: clipping to 8 bits would make both halves white
    path = _save(Image.fromarray(arr), tmp_path / "g16.png")
    out = np.asarray(load_image(path))
    assert out[0, 0, 0] == 0 and out[0, 7, 0] == 255


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (60, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = _save(img, tmp_path / "o.jpg", exif=exif)
    assert load_image(path).size == (20, 60)


def test_first_frame_of_animation(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue")]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load_image(path).getpixel((0, 0))[0] > 200


def test_bytes_input():
    buf = io.BytesIO()
    Image.new("RGB", (5, 7), "red").save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (5, 7)


@pytest.mark.parametrize("case,reason", [
    ("missing", "no such file"), ("dir", "folder"), ("empty", "empty"),
    ("text", "not an image"), ("truncated", "truncated"),
])
def test_bad_files_name_file_and_reason(tmp_path, case, reason):
    path = tmp_path / f"{case}.png"
    if case == "dir":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello, not an image")
    elif case == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        path.write_bytes(buf.getvalue()[:300])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_too_large_is_refused(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(image_mod, "MAX_PIXELS", 5000)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)
