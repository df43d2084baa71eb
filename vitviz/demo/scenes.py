"""Procedural "shapes" scenes for training the demo models offline.

Every scene is a pure function of an integer seed (numpy PCG64 + Pillow, no
torch), so datasets need no files on disk and splits are disjoint seed ranges:
training uses seeds from ``TRAIN_SEED`` (0), testing from ``TEST_SEED``
(1_000_000) and the bundled sample images from ``SAMPLE_SEED`` (2_000_000).

Geometry and textures are defined in relative coordinates (fractions of the
image side) and no random draw depends on the output size, so one seed gives
the same scene at 64 px or at 512 px.

Boxes are ``(x0, y0, x1, y1)`` in pixels with pixel ``(i, j)`` covering
``[i, i+1) x [j, j+1)``.  They are measured on the 4x supersampled raster of
each shape, so they are tight to 1/4 px: with ``return_mask=True`` the
returned masks (pixels with any coverage) span exactly
``floor(x0)..ceil(x1)-1`` and ``floor(y0)..ceil(y1)-1``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image, ImageDraw

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

TRAIN_SEED = 0
TEST_SEED = 1_000_000
SAMPLE_SEED = 2_000_000

# Size ranges as a fraction of the image side, measured as the shape's largest
# extent in any direction (so a box side never exceeds it).
SALIENT_SIZE = (0.30, 0.50)
DISTRACTOR_SIZE = (0.06, 0.12)
DETECTION_SIZE = (0.12, 0.40)
MAX_DISTRACTORS = 3
MAX_DETECTION_OBJECTS = 6
MAX_DETECTION_IOU = 0.3

_SUPERSAMPLE = 4
# Each detection object keeps at least half of its box free of other boxes.
_MAX_COVERED_FRACTION = 0.5
_PLACEMENT_TRIES = 60

# Saturated object colours; backgrounds are kept muted so objects stand out.
_COLOURS = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (50, 180, 60),
    "cyan": (40, 200, 210), "blue": (40, 80, 220), "purple": (140, 60, 200), "magenta": (230, 60, 170),
    "white": (250, 250, 245), "black": (20, 20, 25), "brown": (120, 70, 30), "pink": (250, 160, 190),
}
_PALETTE = np.array(list(_COLOURS.values()), dtype=np.float64)

SeedLike = int | np.integer | np.random.Generator
Box = tuple[float, float, float, float]
T = TypeVar("T")


def _rng(rng_or_seed: SeedLike) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(int(rng_or_seed))


# ---------------------------------------------------------------- shapes ---


def _unit_outline(label: int) -> np.ndarray:
    """Outline vertices [k, 2] centred at 0, scaled so the shape's largest
    extent (max Feret diameter) is 2: equal size parameters look equally big."""
    name = CLASSES[label]
    if name == "circle":
        a = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], axis=1)
    if name == "square":
        a = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(a), np.sin(a)], axis=1)
    if name == "triangle":
        a = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], axis=1) * (2 / math.sqrt(3))
    if name == "star":
        # A fat inner radius (0.45) keeps the arms readable at ~8 px.
        a = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45) / math.sin(math.radians(72))
        return np.stack([rad * np.cos(a), rad * np.sin(a)], axis=1)
    if name == "cross":
        w = 0.32  # half arm width relative to arm length
        quarter = [(w, 1.0), (w, w), (1.0, w)]
        pts: list[tuple[float, float]] = []
        for c, s in [(1, 0), (0, -1), (-1, 0), (0, 1)]:  # quarter outline turned by k * 90 deg
            pts += [(c * x - s * y, s * x + c * y) for x, y in quarter]
        return np.array(pts) / math.hypot(1.0, w)
    raise ValueError(f"unknown label {label}")


_OUTLINES = [_unit_outline(i) for i in range(len(CLASSES))]
_REACH = [float(np.hypot(*o.T).max()) for o in _OUTLINES]  # circumradius / (size/2)


@dataclass(frozen=True)
class _Shape:
    label: int
    cx: float  # centre, fraction of the side
    cy: float
    size: float  # largest extent, fraction of the side
    angle: float  # radians
    colour: np.ndarray  # RGB 0..255, picked after placement
    shade_angle: float  # direction of the soft lighting gradient
    shade_amp: float

    def vertices(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, s], [-s, c]])
        return _OUTLINES[self.label] @ rot * (self.size / 2) + (self.cx, self.cy)

    def extent(self) -> np.ndarray:
        """Geometric box in relative coordinates, clipped to the image."""
        v = self.vertices()
        return np.clip(np.concatenate([v.min(0), v.max(0)]), 0.0, 1.0)


def _random_shape(rng: np.random.Generator, label: int, size: float, inside: float) -> _Shape:
    """Random pose; ``inside`` is how much of the circumradius must stay in frame."""
    margin = min(0.5, inside * _REACH[label] * size / 2)
    return _Shape(
        label=label,
        cx=float(rng.uniform(margin, 1 - margin)),
        cy=float(rng.uniform(margin, 1 - margin)),
        size=size,
        angle=float(rng.uniform(0, 2 * np.pi)),
        colour=np.zeros(3),
        shade_angle=float(rng.uniform(0, 2 * np.pi)),
        shade_amp=float(rng.uniform(0.0, 0.25)),
    )


def _with_colour(rng: np.random.Generator, shape: _Shape, avoid: list[np.ndarray]) -> _Shape:
    """Pick a palette colour far from ``avoid`` (local background, touching
    objects); random among the best few so colour never hints at the class."""
    cands = np.clip(_PALETTE + rng.normal(0, 10, _PALETTE.shape), 0, 255)
    dist = np.min([np.linalg.norm(cands - a, axis=1) for a in avoid], axis=0)
    best = np.argsort(-dist, kind="stable")[:4]
    return replace(shape, colour=cands[best[rng.integers(len(best))]])


def _rasterise(shape: _Shape, side: int) -> tuple[np.ndarray, int, int, Box] | None:
    """Coverage (0..1) of ``shape`` on its integer pixel window at ``(px0, py0)``
    and its tight box, from a supersampled Pillow raster (cheap antialiasing)."""
    v = shape.vertices() * side
    px0, py0 = np.floor(v.min(0)).astype(int).clip(0, side)
    px1, py1 = np.ceil(v.max(0)).astype(int).clip(0, side)
    if px1 <= px0 or py1 <= py0:
        return None
    ss = _SUPERSAMPLE
    canvas = Image.new("L", (int(px1 - px0) * ss, int(py1 - py0) * ss), 0)
    # -0.5: Pillow puts integer coordinates on pixel centres.
    pts = (v - (px0, py0)) * ss - 0.5
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts.tolist()], fill=255)
    hi = np.asarray(canvas) > 0
    cols, rows = np.flatnonzero(hi.any(0)), np.flatnonzero(hi.any(1))
    if cols.size == 0:
        return None
    box = (
        px0 + cols[0] / ss,
        py0 + rows[0] / ss,
        px0 + (cols[-1] + 1) / ss,
        py0 + (rows[-1] + 1) / ss,
    )
    cover = np.asarray(canvas.reduce(ss), dtype=np.float64) / 255.0
    return cover, int(px0), int(py0), tuple(float(b) for b in box)  # type: ignore[return-value]


# ------------------------------------------------------------ background ---


@dataclass(frozen=True)
class _Background:
    base: np.ndarray
    grad_angle: float
    grad_amp: np.ndarray
    blotches: np.ndarray  # coarse colour grid, upsampled smoothly
    waves: list[tuple[float, float, float, np.ndarray]]  # freq, angle, phase, amp
    stripes: tuple[float, float, float, np.ndarray] | None  # freq, angle, phase, amp
    noise_sigma: float
    noise_seed: int


def _random_background(rng: np.random.Generator) -> _Background:
    grey = rng.uniform(55, 200)
    base = grey + rng.normal(0, 18, 3)  # a muted tint
    blotches = rng.normal(0, 28, (int(rng.integers(2, 6)),) * 2 + (3,))
    # Finer mottling as a sum of plane waves: an upsampled fine grid would
    # show its grid cells.
    waves = [
        (float(rng.uniform(1.5, 6)), float(rng.uniform(0, np.pi)), float(rng.uniform(0, 2 * np.pi)), rng.normal(0, 9, 3))
        for _ in range(int(rng.integers(0, 7)))
    ]
    stripes = None
    if rng.random() < 0.35:
        stripes = (
            float(rng.uniform(3, 10)),
            float(rng.uniform(0, np.pi)),
            float(rng.uniform(0, 2 * np.pi)),
            rng.normal(0, 16, 3),
        )
    return _Background(
        base=base,
        grad_angle=float(rng.uniform(0, 2 * np.pi)),
        grad_amp=rng.normal(0, 30, 3),
        blotches=blotches,
        waves=waves,
        stripes=stripes,
        noise_sigma=float(rng.uniform(2, 7)),
        noise_seed=int(rng.integers(2**63)),
    )


def _coords(side: int) -> tuple[np.ndarray, np.ndarray]:
    u = (np.arange(side) + 0.5) / side
    return np.meshgrid(u, u)  # x varies along columns


def _render_background(bg: _Background, side: int) -> np.ndarray:
    x, y = _coords(side)
    t = (x - 0.5) * math.cos(bg.grad_angle) + (y - 0.5) * math.sin(bg.grad_angle)
    img = bg.base + t[..., None] * bg.grad_amp * 2
    img = img + np.stack(
        [
            np.asarray(Image.fromarray(bg.blotches[..., c].astype(np.float32)).resize((side, side), Image.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    for freq, ang, phase, amp in bg.waves:
        img = img + np.sin(2 * np.pi * freq * (x * math.cos(ang) + y * math.sin(ang)) + phase)[..., None] * amp
    if bg.stripes is not None:
        freq, ang, phase, amp = bg.stripes
        wave = np.sin(2 * np.pi * freq * (x * math.cos(ang) + y * math.sin(ang)) + phase)
        img = img + np.tanh(2.5 * wave)[..., None] * amp  # soft-edged bands
    return img


# ------------------------------------------------------------- rendering ---


def _render(
    bg: _Background, shapes: list[_Shape], side: int, with_masks: bool
) -> tuple[Image.Image, list[Box], list[np.ndarray]]:
    """Composite ``shapes`` in order (later on top) over the background."""
    img = _render_background(bg, side)
    x, y = _coords(side)
    boxes: list[Box] = []
    masks: list[np.ndarray] = []
    for shape in shapes:
        raster = _rasterise(shape, side)
        if raster is None:  # only for shapes far below a pixel
            raise ValueError(f"image side {side} too small for the scene")
        cover, px0, py0, box = raster
        win = np.s_[py0 : py0 + cover.shape[0], px0 : px0 + cover.shape[1]]
        # Soft linear lighting so objects are not flat stickers.
        t = (x[win] - shape.cx) * math.cos(shape.shade_angle) + (y[win] - shape.cy) * math.sin(shape.shade_angle)
        fill = shape.colour * (1 + shape.shade_amp * t / (shape.size / 2))[..., None]
        a = cover[..., None]
        img[win] = img[win] * (1 - a) + fill * a
        boxes.append(box)
        if with_masks:
            m = np.zeros((side, side), dtype=bool)
            m[win] = cover > 0
            masks.append(m)
    img = img + bg.noise_sigma * np.random.default_rng(bg.noise_seed).standard_normal(img.shape)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB"), boxes, masks


def _mean_under(bg_img: np.ndarray, rel_box: np.ndarray) -> np.ndarray:
    side = bg_img.shape[0]
    x0, y0 = np.floor(rel_box[:2] * side).astype(int)
    x1, y1 = np.maximum(np.ceil(rel_box[2:] * side).astype(int), (x0 + 1, y0 + 1))
    return bg_img[y0:y1, x0:x1].reshape(-1, 3).mean(0)


def _iou_and_cover(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU of two boxes and the largest fraction of either box they share."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


# ---------------------------------------------------------------- scenes ---


def _classification_layout(rng: np.random.Generator) -> tuple[_Background, _Shape, list[_Shape]]:
    """Background, salient shape and distractors, before colouring."""
    bg = _random_background(rng)
    label = int(rng.integers(len(CLASSES)))
    salient = _random_shape(rng, label, float(rng.uniform(*SALIENT_SIZE)), inside=1.0)
    distractors: list[_Shape] = []
    for _ in range(int(rng.integers(MAX_DISTRACTORS + 1))):
        d_label, d_size = int(rng.integers(len(CLASSES))), float(rng.uniform(*DISTRACTOR_SIZE))
        # Prefer spots clear of the salient shape so distractors stay visible.
        for _ in range(20):
            d = _random_shape(rng, d_label, d_size, inside=1.0)
            gap = math.hypot(d.cx - salient.cx, d.cy - salient.cy)
            if gap > (_REACH[label] * salient.size + _REACH[d_label] * d_size) / 2:
                break
        distractors.append(d)
    return bg, salient, distractors


def classification_scene(
    rng_or_seed: SeedLike, size: int = 96, return_mask: bool = False
) -> tuple[Image.Image, int, Box] | tuple[Image.Image, int, Box, np.ndarray]:
    """One large salient shape (the label) among 0-3 small distractors.

    Returns ``(image, label, box)`` with the salient shape's tight box, plus
    its boolean ``[size, size]`` coverage mask when ``return_mask``.
    The salient shape is drawn last, so it is never occluded.
    """
    rng = _rng(rng_or_seed)
    bg, salient, distractors = _classification_layout(rng)
    bg_img = _render_background(bg, size)
    salient = _with_colour(rng, salient, [_mean_under(bg_img, salient.extent())])
    distractors = [_with_colour(rng, d, [_mean_under(bg_img, d.extent())]) for d in distractors]
    image, boxes, masks = _render(bg, distractors + [salient], size, return_mask)
    if return_mask:
        return image, salient.label, boxes[-1], masks[-1]
    return image, salient.label, boxes[-1]


def detection_scene(
    rng_or_seed: SeedLike, size: int = 128, return_mask: bool = False
) -> tuple[Image.Image, list[int], np.ndarray] | tuple[Image.Image, list[int], np.ndarray, np.ndarray]:
    """1-6 shapes with pairwise box IoU <= 0.3, each keeping most of its box
    unshared; shapes may be cut by the image border (boxes are clipped).

    Returns ``(image, labels, boxes)`` with ``boxes`` float32 ``[n, 4]``, plus
    boolean ``[n, size, size]`` masks of each whole shape (including parts
    hidden under later shapes) when ``return_mask``.
    """
    rng = _rng(rng_or_seed)
    bg = _random_background(rng)
    n = int(rng.integers(1, MAX_DETECTION_OBJECTS + 1))
    # Largest first: big shapes are hard to fit late, and drawing small ones on
    # top keeps them fully visible.
    sizes = np.sort(rng.uniform(*DETECTION_SIZE, n))[::-1]
    shapes: list[_Shape] = []
    for obj_size in sizes:
        label = int(rng.integers(len(CLASSES)))
        for _ in range(_PLACEMENT_TRIES):
            cand = _random_shape(rng, label, float(obj_size), inside=0.85)
            ext = cand.extent()
            if all(
                iou <= MAX_DETECTION_IOU and cover <= _MAX_COVERED_FRACTION
                for iou, cover in (_iou_and_cover(ext, s.extent()) for s in shapes)
            ):
                shapes.append(cand)
                break

    bg_img = _render_background(bg, size)
    coloured: list[_Shape] = []
    for s in shapes:
        ext = s.extent()
        touching = [c.colour for c in coloured if _iou_and_cover(ext, c.extent())[1] > 0]
        coloured.append(_with_colour(rng, s, [_mean_under(bg_img, ext), *touching]))
    image, boxes, masks = _render(bg, coloured, size, return_mask)
    labels = [s.label for s in coloured]
    box_arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if return_mask:
        return image, labels, box_arr, np.array(masks, dtype=bool).reshape(-1, size, size)
    return image, labels, box_arr


# -------------------------------------------------------------- datasets ---


class SceneDataset(Sequence[T], Generic[T]):
    """Lazily generated scenes: item ``i`` is ``scene_fn(seed + i, size)``."""

    def __init__(self, scene_fn: Callable[[int, int], T], n: int, seed: int, size: int) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        self.scene_fn, self.n, self.seed, self.size = scene_fn, n, seed, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> T:  # type: ignore[override]
        i = operator.index(i)
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.scene_fn(self.seed + i % self.n, self.size)


def classification_dataset(
    n: int, seed: int = TRAIN_SEED, size: int = 96
) -> SceneDataset[tuple[Image.Image, int, Box]]:
    """``n`` classification scenes from seeds ``seed .. seed+n-1``."""
    return SceneDataset(classification_scene, n, seed, size)  # type: ignore[arg-type]


def detection_dataset(
    n: int, seed: int = TRAIN_SEED, size: int = 128
) -> SceneDataset[tuple[Image.Image, list[int], np.ndarray]]:
    """``n`` detection scenes from seeds ``seed .. seed+n-1``."""
    return SceneDataset(detection_scene, n, seed, size)  # type: ignore[arg-type]


# --------------------------------------------------------------- samples ---


def write_samples(folder: str | Path, size: int = 384, n_classify: int = 3, n_detect: int = 2) -> list[Path]:
    """Render presentable samples (natively at ``size``) as
    ``shapes_classify_<k>.png`` and ``shapes_detect_<k>.png``.

    Seeds are searched from ``SAMPLE_SEED`` for variety: classification
    samples show distinct classes with distractors, detection samples show at
    least three objects of at least three classes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seed, seen = SAMPLE_SEED, set()
    while len(seen) < n_classify:
        _, salient, distractors = _classification_layout(np.random.default_rng(seed))
        if salient.label not in seen and distractors:
            seen.add(salient.label)
            image = classification_scene(seed, size)[0]
            path = folder / f"shapes_classify_{len(seen)}.png"
            image.save(path)
            written.append(path)
        seed += 1
    found = 0
    while found < n_detect:
        image, labels, _ = detection_scene(seed, size)  # type: ignore[misc]
        if len(labels) >= 3 and len(set(labels)) >= 3:
            found += 1
            path = folder / f"shapes_detect_{found}.png"
            image.save(path)
            written.append(path)
        seed += 1
    return written


if __name__ == "__main__":
    import sys

    for p in write_samples(sys.argv[1] if len(sys.argv) > 1 else "resources/samples"):
        print(p)
