"""What goes into and comes out of DETR: COCO class names, image preprocessing, padding, and
turning predicted boxes into detections in original-image pixels.

Box convention: DETR predicts (cx, cy, w, h) in [0, 1] relative to the *unpadded, resized*
image (its training targets are normalised that way and the position embedding only spans the
valid region). Resizing keeps the image's full extent, so the same fractions apply to the
original image: multiplying by the original width/height gives original pixels directly, with no
need to undo the resize scale or the padding.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

# COCO detection labels indexed by category id (0..90), as DETR's 91-way classifier sees them;
# "N/A" marks ids that COCO skipped (id 0 and the 11 categories never annotated).
COCO_CLASSES: tuple[str, ...] = (
    "N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork", "knife",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
    "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table",
    "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreprocessedImage(NamedTuple):
    tensor: torch.Tensor  # (3, H, W) float32, ImageNet-normalised, H, W = resized size
    scale: tuple[float, float]  # (scale_x, scale_y) = resized / original, per axis
    orig_hw: tuple[int, int]  # (H_in, W_in): size of the image given to detr_preprocess


def detr_resize_hw(w: int, h: int, short: int = 800,
                   max_size: int | None = 1333) -> tuple[int, int]:
    """(height, width) DETR resizes a w x h image to: the short side becomes `short` unless that
    would push the long side past `max_size`, in which case the short side shrinks so the long
    side is about `max_size`. Integer rounding is DETR's (round the short side, floor the long
    one), so for extreme aspect ratios the long side can land a few pixels past `max_size`
    (8:1 gives 1336), exactly as the official models were evaluated."""
    if max_size is not None:
        lo, hi = float(min(w, h)), float(max(w, h))
        if hi / lo * short > max_size:
            short = int(round(max_size * lo / hi))
    if (w <= h and w == short) or (h <= w and h == short):
        return h, w
    if w < h:
        return int(short * h / w), short
    return short, int(short * w / h)


def detr_preprocess(image: Image.Image, short: int = 800,
                    max_size: int = 1333) -> PreprocessedImage:
    """PIL image -> DETR input, resized as DETR's eval transform (RandomResize([800], 1333))."""
    image = image.convert("RGB")
    w, h = image.size
    oh, ow = detr_resize_hw(w, h, short, max_size)
    if (oh, ow) != (h, w):
        image = TF.resize(image, [oh, ow])  # bilinear, as torchvision's default for PIL
    tensor = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
    return PreprocessedImage(tensor, (ow / w, oh / h), (h, w))


def pad_images(images: Sequence[torch.Tensor],
               multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (3, H_i, W_i) images into one zero-padded batch, padding bottom/right only, to the
    largest size rounded up to `multiple`. Returns (n, 3, H, W) and mask (n, H, W), True = pad."""
    if not images:
        raise ValueError("no images to pad")

    def up(x: int) -> int:
        return -(-x // multiple) * multiple

    H = up(max(im.shape[-2] for im in images))
    W = up(max(im.shape[-1] for im in images))
    first = images[0]
    batch = first.new_zeros((len(images), first.shape[0], H, W))
    mask = torch.ones((len(images), H, W), dtype=torch.bool, device=first.device)
    for i, im in enumerate(images):
        h, w = im.shape[-2:]
        batch[i, :, :h, :w] = im
        mask[i, :h, :w] = False
    return batch, mask


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def boxes_to_pixels(boxes_cxcywh, orig_w: float, orig_h: float) -> np.ndarray:
    """(..., 4) normalised (cx, cy, w, h) -> (..., 4) (x0, y0, x1, y1) in original-image pixels.

    Correct for any resize/padding DETR saw, because the normalisation is relative to the
    unpadded resized image, which covers the whole original image (see module docstring).
    """
    b = _to_numpy(boxes_cxcywh)
    cx, cy, bw, bh = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    xyxy = np.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], axis=-1)
    return xyxy * np.array([orig_w, orig_h, orig_w, orig_h], dtype=np.float32)


class Detections(NamedTuple):
    query: np.ndarray  # (k,) int: which decoder query made each detection (links to attention)
    labels: np.ndarray  # (k,) int: class id, index into the class-name list
    scores: np.ndarray  # (k,) float: softmax probability of that class
    boxes: np.ndarray  # (k, 4) float: (x0, y0, x1, y1) in original-image pixels


def class_probabilities(logits) -> np.ndarray:
    """(..., classes + 1) logits -> softmax over all outputs, including the last (no-object)."""
    z = _to_numpy(logits)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def postprocess(logits, boxes, orig_size: tuple[int, int], threshold: float = 0.7) -> Detections:
    """Detections of one image whose best real-class probability exceeds `threshold`.

    logits (q, classes + 1) and boxes (q, 4), or with a leading batch axis of 1; orig_size is
    (H, W) of the original image. The softmax runs over all outputs, then the no-object column
    is dropped before taking the best class, as DETR's PostProcess. Sorted by score, highest first.
    """
    probs = class_probabilities(logits)
    b = _to_numpy(boxes)
    if probs.ndim == 3:
        if probs.shape[0] != 1:
            raise ValueError("postprocess takes one image; pass logits[i], boxes[i]")
        probs, b = probs[0], b[0]
    scores = probs[:, :-1].max(axis=-1)
    labels = probs[:, :-1].argmax(axis=-1)
    keep = np.flatnonzero(scores > threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    h, w = orig_size
    return Detections(keep, labels[keep], scores[keep], boxes_to_pixels(b[keep], w, h))


def class_name(label: int, names: Sequence[str] = COCO_CLASSES) -> str:
    return names[label] if 0 <= label < len(names) else f"class {label}"
