"""The result of analysing one image with a Swin Transformer: window attention per block, the
window geometry behind it, and the views derived from it.

Plain numpy, no torch. Stages count from 0, blocks from 0 within their stage. Token (row, col)
always means a position on that stage's grid in image order (never rolled coordinates). Maps are
[rows, cols] of the stage grid: draw them over `stage_grid(stage).extent()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np
from PIL import Image

from ..geometry import TokenGrid
from . import windows as win
from .heads import fuse_heads
from .common import ClassifierMixin
from .windows import Rect, WindowLayout, WindowSlot

Head = Union[int, str]  # head index or "mean" | "max" | "min"
Token = Sequence[int]  # (row, col) on a stage grid


@dataclass(frozen=True)
class SwinBlock:
    """One Swin block as the model ran it. `layout.shift` and `layout.window` are effective
    (after torchvision's adjustment); `configured_shift` is what the block was built with."""

    stage: int
    block: int  # index within the stage
    index: int  # index over all blocks
    heads: int
    layout: WindowLayout
    configured_shift: tuple[int, int]

    @property
    def feature_size(self) -> tuple[int, int]:
        """(H, W) of the stage's feature map, before padding."""
        return self.layout.height, self.layout.width

    @property
    def padding(self) -> tuple[int, int]:
        """(bottom, right) tokens of zero padding added to reach a multiple of the window."""
        return self.layout.pad

    @property
    def window(self) -> tuple[int, int]:
        return self.layout.window

    @property
    def shift(self) -> tuple[int, int]:
        return self.layout.shift

    @property
    def shifted(self) -> bool:
        return self.layout.shifted

    @property
    def num_windows(self) -> int:
        return self.layout.num_windows


@dataclass(frozen=True)
class MergeStep:
    """One stage of `merge_trace`: the token holding the pixel, and the four stage-(s-1) tokens
    PatchMerging concatenated into it (its channel order x0..x3; None where that part was padding)."""

    stage: int
    token: tuple[int, int]
    parts: tuple[tuple[int, int] | None, ...]  # empty at stage 0 (built from pixels)
    via: int | None  # index into `parts` of the previous stage's token holding the pixel


@dataclass
class SwinAnalysis(ClassifierMixin):
    family = "swin"

    image: Image.Image  # the original image, RGB
    grid: TokenGrid  # stage 0 (patch-embedding) grid
    model_name: str
    weights: str
    trained: bool
    device: str
    model_input: np.ndarray  # (3, H, W) float32: exactly what the model saw (normalised)
    blocks: list[SwinBlock]  # in forward order
    attn: list[np.ndarray]  # per block (windows, heads, N, N), N = Mh*Mw, rows = queries; float16 by default
    rel_bias: list[np.ndarray]  # per block (heads, 2Mh-1, 2Mw-1) float32
    logits: np.ndarray | None
    class_names: list[str] | None
    version: int = 1  # Swin v1 or v2 (cosine attention, continuous position bias)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    _coords: dict = field(default_factory=dict, repr=False)

    # --- structure -------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return self.blocks[-1].stage + 1

    def stage_blocks(self, stage: int) -> list[SwinBlock]:
        s = self._stage(stage)
        return [b for b in self.blocks if b.stage == s]

    def num_blocks(self, stage: int) -> int:
        return len(self.stage_blocks(stage))

    def stage_grid(self, stage: int) -> TokenGrid:
        """The token grid of `stage`: each merge halves it (rounding up, as PatchMerging pads)."""
        return self.grid.coarsen(2 ** self._stage(stage))

    def block(self, stage: int, block: int) -> SwinBlock:
        blocks = self.stage_blocks(stage)
        if not -len(blocks) <= block < len(blocks):
            raise IndexError(f"block {block} out of range (stage {stage} has {len(blocks)})")
        return blocks[block]

    # --- attention -------------------------------------------------------------------------
    def window_attention(self, stage: int, block: int) -> np.ndarray:
        """(windows, heads, N, N) float32; rows are queries and sum to 1 (padding slots included)."""
        return self.attn[self.block(stage, block).index].astype(np.float32)

    def window_of(self, stage: int, block: int, row: int, col: int) -> WindowSlot:
        """Window of token (row, col) in this block, and its slot inside the window (through the roll)."""
        return win.window_slot(self.block(stage, block).layout, int(row), int(col))

    def token_coords(self, stage: int, block: int) -> np.ndarray:
        """(windows, N, 2) int: image (row, col) of every window slot; row >= rows or col >= cols
        marks padding. Index a window's attention with it to place values."""
        b = self.block(stage, block)
        if b.index not in self._coords:
            coords = win.window_token_coords(b.layout)
            coords.setflags(write=False)  # cached and shared between callers
            self._coords[b.index] = coords
        return self._coords[b.index]

    def window_tokens(self, stage: int, block: int, row: int, col: int) -> np.ndarray:
        """(K, 2) int: image (row, col) of every real token in the window of (row, col), in slot
        order. A shifted window that wraps comes back split across the border."""
        slot = self.window_of(stage, block, row, col)
        b = self.block(stage, block)
        coords = self.token_coords(stage, block)[slot.window]
        return coords[(coords[:, 0] < b.layout.height) & (coords[:, 1] < b.layout.width)]

    def window_rects(self, stage: int, block: int, row: int, col: int) -> list[Rect]:
        """The window of (row, col) as 1-4 (row0, col0, row1, col1) half-open rectangles of the
        stage grid: its pieces when it wraps around the border. For outlining it."""
        b = self.block(stage, block)
        return win.window_rects(b.layout, self.window_of(stage, block, row, col).window)

    def attention_map(self, stage: int, block: int, head: Head, token: Token,
                      direction: str = "from") -> np.ndarray:
        """(rows, cols) float32 of the stage grid. "from": where `token` looks (its row);
        "to": how much each token of its window looks at it (its column). Values sit at their true
        image positions; NaN outside the window. Masked pairs of a shifted window are ~0, not NaN."""
        b = self.block(stage, block)
        window, vec = _token_vector(self.attn[b.index], b.layout, token, direction)  # (heads, N)
        return win.scatter_window(b.layout, window, fuse_heads(vec, head, axis=0).astype(np.float32))

    def head_maps(self, stage: int, token: Token, direction: str = "from") -> np.ndarray:
        """Every head of every block of `stage` for one token: (blocks, heads, rows, cols) float32,
        NaN outside each block's window of the token."""
        maps = []
        for b in self.stage_blocks(stage):
            window, vec = _token_vector(self.attn[b.index], b.layout, token, direction)
            maps.append(win.scatter_window(b.layout, window, vec.astype(np.float32)))
        return np.stack(maps)

    def window_partition(self, stage: int, block: int, shifted: bool | None = None) -> np.ndarray:
        """(rows, cols) int window ids in image coordinates. shifted=None: this block's own layout;
        False / True: the stage's regular / shifted layout (shift = window // 2, dropped where
        torchvision drops it)."""
        layout = self.block(stage, block).layout
        if shifted is not None:
            built = [b.configured_shift for b in self.stage_blocks(stage) if sum(b.configured_shift)]
            shift = (built[0] if built else tuple(m // 2 for m in layout.window)) if shifted else (0, 0)
            layout = WindowLayout.for_block(layout.height, layout.width, layout.window, shift)
        return win.window_partition(layout)

    def mask_regions(self, stage: int, block: int) -> np.ndarray:
        """(rows, cols) int 0..8: the region labels of the shifted-window mask, in image
        coordinates. Tokens attend to each other iff same window and same region; all 0 in
        regular blocks."""
        return win.mask_regions(self.block(stage, block).layout)

    def relative_position_bias(self, stage: int, block: int) -> np.ndarray:
        """(heads, 2Mh-1, 2Mw-1) float32, the bias added to the logit of a query-key pair at offset
        (dy, dx) = query - key, at [h, dy + Mh - 1, dx + Mw - 1]. v2: 16 * sigmoid(MLP)."""
        return self.rel_bias[self.block(stage, block).index]

    def received_attention(self, stage: int, block: int, head: Head = "mean") -> np.ndarray:
        """(rows, cols) float32: attention each token receives, averaged over all the stage's
        query tokens (sums to 1 minus what went to padding)."""
        b = self.block(stage, block)
        return win.received_attention(b.layout, fuse_heads(self.attn[b.index], head, axis=1))

    def attention_summary(self, stage: int = -1, head: Head = "mean") -> np.ndarray:
        """(rows, cols) float32 of `stage` (default the last): `received_attention` averaged over
        the stage's blocks. "Where does the model look"."""
        return np.mean([self.received_attention(stage, b.block, head) for b in self.stage_blocks(stage)],
                       axis=0).astype(np.float32)

    def attention_steps(self, stage: int, block: int, head: int, token: Token):
        """q, k, v, logits, bias, mask, weights, output of one head for one token, from the block's
        own weights (vitviz.core.analysis.steps_swin); needs the model attached."""
        from .steps_swin import swin_attention_steps

        return swin_attention_steps(self, stage, block, head, token)

    # --- hierarchy -------------------------------------------------------------------------
    def merge_trace(self, x: float, y: float) -> list[MergeStep]:
        """Per stage, the token holding original pixel (x, y) and the four finer tokens merged
        into it. Empty if the model never saw that pixel (outside the image or cropped away)."""
        first = self.grid.token_at(x, y)
        if first is None:
            return []
        steps = [MergeStep(0, first, (), None)]
        for s in range(1, self.num_stages):
            prev = self.stage_grid(s - 1)
            r, c = steps[-1].token
            parts = tuple(p if p[0] < prev.rows and p[1] < prev.cols else None
                          for p in win.merge_parts(r // 2, c // 2))
            steps.append(MergeStep(s, (r // 2, c // 2), parts, parts.index((r, c))))
        return steps

    # --- predictions and input -------------------------------------------------------------
    def _stage(self, stage: int) -> int:
        n = self.num_stages
        if not -n <= stage < n:
            raise IndexError(f"stage {stage} out of range (model has {n})")
        return stage % n


def _token_vector(attn: np.ndarray, layout: WindowLayout, token: Token, direction: str):
    """(window, (heads, N) row or column of `token` in its window)."""
    if direction not in ("from", "to"):
        raise ValueError(f"direction must be 'from' or 'to', not {direction!r}")
    slot = win.window_slot(layout, *(int(t) for t in token))
    a = attn[slot.window]  # (heads, N, N)
    return slot.window, (a[:, slot.index, :] if direction == "from" else a[:, :, slot.index])
