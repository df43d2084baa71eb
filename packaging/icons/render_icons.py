"""Render vitviz's application icon from its SVG masters into the sizes platforms want.

    python packaging/icons/render_icons.py          # (re)writes resources/icons/*.png, .ico, .icns
    python packaging/icons/render_icons.py --check  # exit 1 if a rendered file is missing

resources/icons/vitviz.svg is the master for 32 px and up; vitviz-small.svg is drawn on a 16 px grid
for 16 and 24 px, where the big one's 16 patches turn to mush. Qt's SVG renderer (PySide6, already a
dependency) draws them; Pillow writes the Windows .ico and the macOS .icns. The outputs are committed,
so neither a build nor an install needs to run this.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL_MAX = 24  # sizes up to this use vitviz-small.svg
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def master_for(size: int) -> Path:
    return ICONS / ("vitviz-small.svg" if size <= SMALL_MAX else "vitviz.svg")


def render(size: int):
    """The icon at size x size px as a Pillow RGBA image."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6 import QtCore, QtGui, QtSvg

    _app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication([])  # noqa: F841 (fonts, plugins)
    renderer = QtSvg.QSvgRenderer(str(master_for(size)))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {master_for(size)}")
    img = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32)
    img.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(img)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    return Image.open(io.BytesIO(bytes(buf.data()))).convert("RGBA")


def outputs() -> dict[Path, bytes]:
    """Every rendered file with its bytes (PNG per size, .ico, .icns)."""
    images = {s: render(s) for s in sorted(set(PNG_SIZES) | set(ICO_SIZES) | set(ICNS_SIZES))}
    out: dict[Path, bytes] = {}
    for s in PNG_SIZES:
        out[ICONS / f"vitviz-{s}.png"] = _png(images[s])
    buf = io.BytesIO()
    # Pillow's ICO writer takes the frames from the largest image and the sizes list; giving it the
    # hand-picked small renders keeps 16/24 px from being downscaled from 256.
    big = images[max(ICO_SIZES)]
    big.save(buf, "ICO", sizes=[(s, s) for s in ICO_SIZES],
             append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    out[ICONS / "vitviz.ico"] = buf.getvalue()
    buf = io.BytesIO()
    images[max(ICNS_SIZES)].save(buf, "ICNS",
                                 append_images=[images[s] for s in ICNS_SIZES if s != max(ICNS_SIZES)])
    out[ICONS / "vitviz.icns"] = buf.getvalue()
    return out


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing rendered files")
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        missing = [p for p in files if not p.is_file()]
        for p in missing:
            print(f"missing: {p}")
        return 1 if missing else 0
    for path, data in files.items():
        path.write_bytes(data)
        print(f"{path.relative_to(ICONS.parents[1])}  {len(data):>7} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
