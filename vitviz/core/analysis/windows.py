"""Swin window geometry as torchvision's `shifted_window_attention` lays it out: pure numpy.

Coordinates. A block sees an (H, W) feature map, padded bottom/right to (Hp, Wp), multiples of
the window (Mh, Mw). A shifted block rolls the padded map by -shift, then cuts it into
(Hp/Mh) x (Wp/Mw) windows numbered row-major; a window's Mh*Mw tokens are numbered row-major
inside it. So window `w`, slot (i, j) holds the padded-image token
    ((w // nWw * Mh + i + sh) mod Hp, (w % nWw * Mw + j + sw) mod Wp),
and positions with row >= H or col >= W are padding (zeros fed through qkv, never masked).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

Rect = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open, image token coordinates


def padded_length(n: int, window: int) -> int:
    """`n` rounded up to a multiple of `window` (torchvision pads bottom/right)."""
    return n + (window - n % window) % window


def effective_shift(padded_hw: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> tuple[int, int]:
    """torchvision drops the shift along an axis where the window covers the whole padded map."""
    return tuple(0 if m >= p else int(s) for p, m, s in zip(padded_hw, window, shift))  # type: ignore[return-value]


@dataclass(frozen=True)
class WindowLayout:
    """How one block cuts its (height, width) feature map into windows. `shift` is effective."""

    height: int
    width: int
    window: tuple[int, int]  # (Mh, Mw)
    shift: tuple[int, int] = (0, 0)  # (sh, sw), already adjusted the way torchvision does

    @staticmethod
    def for_block(height: int, width: int, window: Sequence[int], shift: Sequence[int]) -> "WindowLayout":
        """The layout torchvision uses for a block configured with `window` and `shift`."""
        win = (int(window[0]), int(window[1]))
        padded = (padded_length(height, win[0]), padded_length(width, win[1]))
        return WindowLayout(int(height), int(width), win, effective_shift(padded, win, shift))

    @property
    def padded(self) -> tuple[int, int]:
        return padded_length(self.height, self.window[0]), padded_length(self.width, self.window[1])

    @property
    def pad(self) -> tuple[int, int]:
        """(bottom, right) padding in tokens."""
        hp, wp = self.padded
        return hp - self.height, wp - self.width

    @property
    def grid(self) -> tuple[int, int]:
        """(windows down, windows across)."""
        hp, wp = self.padded
        return hp // self.window[0], wp // self.window[1]

    @property
    def num_windows(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens_per_window(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def shifted(self) -> bool:
        return sum(self.shift) > 0


class WindowSlot(NamedTuple):
    """Where a token sits: window index, and (row, col) inside the window."""

    window: int
    row: int
    col: int
    index: int  # row * Mw + col: the query/key index into the window's attention matrix


def window_token_coords(layout: WindowLayout) -> np.ndarray:
    """(windows, Mh*Mw, 2) int: padded-image (row, col) of every slot of every window."""
    (mh, mw), (sh, sw), (hp, wp) = layout.window, layout.shift, layout.padded
    nh, nw = layout.grid
    rows = (np.arange(nh)[:, None] * mh + np.arange(mh)[None, :] + sh) % hp  # (nh, mh)
    cols = (np.arange(nw)[:, None] * mw + np.arange(mw)[None, :] + sw) % wp  # (nw, mw)
    r = np.broadcast_to(rows[:, None, :, None], (nh, nw, mh, mw))
    c = np.broadcast_to(cols[None, :, None, :], (nh, nw, mh, mw))
    return np.stack([r, c], axis=-1).reshape(nh * nw, mh * mw, 2)


def slot_maps(layout: WindowLayout) -> tuple[np.ndarray, np.ndarray]:
    """(window, index) maps over the padded image, each (Hp, Wp) int: the inverse of
    `window_token_coords`."""
    (mh, mw), (sh, sw), (hp, wp) = layout.window, layout.shift, layout.padded
    rr = (np.arange(hp) - sh) % hp  # rolled row of each image row
    rc = (np.arange(wp) - sw) % wp
    window = (rr // mh)[:, None] * layout.grid[1] + (rc // mw)[None, :]
    index = (rr % mh)[:, None] * mw + (rc % mw)[None, :]
    return window, index


def window_slot(layout: WindowLayout, row: int, col: int) -> WindowSlot:
    """The window and slot of image token (row, col), through the roll."""
    if not (0 <= row < layout.height and 0 <= col < layout.width):
        raise IndexError(f"token ({row}, {col}) outside the {layout.height}x{layout.width} feature map")
    (mh, mw), (sh, sw), (hp, wp) = layout.window, layout.shift, layout.padded
    r, c = (row - sh) % hp, (col - sw) % wp
    i, j = r % mh, c % mw
    return WindowSlot((r // mh) * layout.grid[1] + c // mw, i, j, i * mw + j)


def window_partition(layout: WindowLayout) -> np.ndarray:
    """(H, W) int: the window id of every image token."""
    return slot_maps(layout)[0][: layout.height, : layout.width]


def window_rects(layout: WindowLayout, window: int) -> list[Rect]:
    """The image tokens of `window` as up to four rectangles: a shifted window that runs past the
    padded map's bottom/right edge wraps to the top/left. Padding is cut off."""
    (mh, mw), (sh, sw), (hp, wp) = layout.window, layout.shift, layout.padded
    wr, wc = divmod(int(window), layout.grid[1])

    def spans(start: int, length: int, period: int, limit: int) -> list[tuple[int, int]]:
        start %= period
        parts = [(start, min(start + length, period))]
        if start + length > period:
            parts.append((0, start + length - period))
        return [(a, min(b, limit)) for a, b in parts if a < min(b, limit)]

    return [(r0, c0, r1, c1)
            for r0, r1 in spans(wr * mh + sh, mh, hp, layout.height)
            for c0, c1 in spans(wc * mw + sw, mw, wp, layout.width)]


def shift_regions_rolled(layout: WindowLayout) -> np.ndarray:
    """(Hp, Wp) int in rolled coordinates: the 3x3 = 9 regions torchvision labels with slices to
    build the shifted-window mask (the same slices, so edge cases match). All 0 when not shifted."""
    hp, wp = layout.padded
    labels = np.zeros((hp, wp), dtype=np.int64)
    if not layout.shifted:
        return labels
    (mh, mw), (sh, sw) = layout.window, layout.shift
    h_slices = ((0, -mh), (-mh, -sh), (-sh, None))
    w_slices = ((0, -mw), (-mw, -sw), (-sw, None))
    count = 0
    for h0, h1 in h_slices:
        for w0, w1 in w_slices:
            labels[h0:h1, w0:w1] = count
            count += 1
    return labels


def mask_regions(layout: WindowLayout) -> np.ndarray:
    """(H, W) int: the shifted-window mask's region label of every image token. Two tokens attend
    to each other iff they share a window and a region."""
    (sh, sw), (hp, wp) = layout.shift, layout.padded
    rolled = shift_regions_rolled(layout)
    image = rolled[(np.arange(hp) - sh) % hp][:, (np.arange(wp) - sw) % wp]  # undo the roll
    return image[: layout.height, : layout.width]


def window_mask(layout: WindowLayout) -> np.ndarray:
    """(windows, N, N) bool: True where torchvision masks the pair (adds -100 before softmax)."""
    rolled = shift_regions_rolled(layout)
    coords = window_token_coords(WindowLayout(layout.height, layout.width, layout.window))  # unrolled
    labels = rolled[coords[..., 0], coords[..., 1]]  # (windows, N)
    return labels[:, :, None] != labels[:, None, :]


def valid_slots(layout: WindowLayout) -> np.ndarray:
    """(windows, N) bool: slots holding a real token, not padding."""
    coords = window_token_coords(layout)
    return (coords[..., 0] < layout.height) & (coords[..., 1] < layout.width)


def scatter_windows(layout: WindowLayout, values: np.ndarray) -> np.ndarray:
    """(..., windows, N) per-slot values -> (..., H, W) at their image positions (padding dropped)."""
    coords = window_token_coords(layout)
    out = np.empty(values.shape[:-2] + layout.padded, dtype=values.dtype)
    out[..., coords[..., 0], coords[..., 1]] = values  # every padded position occurs once
    return out[..., : layout.height, : layout.width]


def scatter_window(layout: WindowLayout, window: int, values: np.ndarray) -> np.ndarray:
    """(..., N) values of one window -> (..., H, W) float32, NaN outside the window."""
    coords = window_token_coords(layout)[int(window)]  # (N, 2)
    hp, wp = layout.padded
    out = np.full(values.shape[:-1] + (hp, wp), np.nan, dtype=np.float32)
    out[..., coords[:, 0], coords[:, 1]] = values
    return out[..., : layout.height, : layout.width]


def received_attention(layout: WindowLayout, attn: np.ndarray) -> np.ndarray:
    """(windows, N, N) one head's (or fused) attention -> (H, W) float32: the attention each token
    receives, averaged over all real query tokens of the map (queries outside its window give 0).
    It sums to 1 minus the share that went to padding."""
    valid = valid_slots(layout)  # (windows, N)
    received = np.einsum("wq,wqk->wk", valid.astype(np.float32), attn.astype(np.float32))
    return scatter_windows(layout, received / valid.sum())


def relative_position_index(window: Sequence[int]) -> np.ndarray:
    """(N*N,) int, as torchvision's `relative_position_index` buffer: pair (q, k) of a window ->
    (dy + Mh - 1) * (2Mw - 1) + (dx + Mw - 1), with (dy, dx) = position(q) - position(k)."""
    mh, mw = int(window[0]), int(window[1])
    pos = np.stack(np.meshgrid(np.arange(mh), np.arange(mw), indexing="ij")).reshape(2, -1)  # (2, N)
    rel = pos[:, :, None] - pos[:, None, :]  # (2, N, N)
    return ((rel[0] + mh - 1) * (2 * mw - 1) + rel[1] + mw - 1).reshape(-1)


def bias_table(pair_bias: np.ndarray, window: Sequence[int], index: np.ndarray | None = None) -> np.ndarray:
    """(heads, N, N) bias added to each query-key pair -> (heads, 2Mh-1, 2Mw-1) by relative offset:
    [h, dy + Mh - 1, dx + Mw - 1] with (dy, dx) = query - key. Every offset occurs in a window."""
    mh, mw = int(window[0]), int(window[1])
    idx = relative_position_index(window) if index is None else np.asarray(index).reshape(-1)
    heads = pair_bias.shape[0]
    table = np.empty((heads, (2 * mh - 1) * (2 * mw - 1)), dtype=np.float32)
    table[:, idx] = pair_bias.reshape(heads, -1)  # pairs with one offset share one value
    return table.reshape(heads, 2 * mh - 1, 2 * mw - 1)


def merge_parts(row: int, col: int) -> tuple[tuple[int, int], ...]:
    """The four finer tokens PatchMerging concatenates into token (row, col), in its channel order
    x0..x3: [0::2, 0::2], [1::2, 0::2], [0::2, 1::2], [1::2, 1::2]."""
    r, c = 2 * row, 2 * col
    return (r, c), (r + 1, c), (r, c + 1), (r + 1, c + 1)
