"""Swin window geometry as plain marks: window partitions (regular / shifted) as line segments, the
nine regions the shifted-window mask keeps apart as rectangles, the pieces of one window, and the
colours both the GUI overlay and the exported figures draw them in. Pure numpy, no Qt.

Everything is given per token of a stage grid ([rows, cols] window ids or region labels) and placed
in original-image pixels through that grid's edges (TokenGrid.edges()), like the heatmap under it.
"""
from __future__ import annotations

import numpy as np

Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1) original-image pixels

REGULAR_COLOR = "#00e5ff"  # cyan: W-MSA (regular) windows
SHIFTED_COLOR = "#ff9f0a"  # orange: SW-MSA (shifted) windows
WINDOW_COLOR = "#ffffff"  # the selected token's window, every piece of it
# Regions 1..8 of the shifted-window mask (0, the bulk of the map, stays clear): distinct hues.
REGION_COLORS = ("#ffffff", "#ff4fa3", "#7cff4f", "#4fa3ff", "#ffe14f", "#c44fff", "#4fffe1",
                 "#ff8a4f", "#e6e6e6")
PARTITIONS = (("block", "this block's own"), ("regular", "regular (W-MSA)"), ("shifted", "shifted (SW-MSA)"),
              ("both", "compare: regular + shifted"), ("none", "none"))
PART_NAMES = ("x0", "x1", "x2", "x3")  # PatchMerging's channel order: [0::2,0::2], [1::2,0::2], ...


def rgba(color: str, alpha: int = 255) -> tuple[int, int, int, int]:
    """'#rrggbb' -> (r, g, b, alpha), the figures' colour type."""
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour must be '#rrggbb', not {color!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), alpha


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, stop) runs of True in a 1-d bool array."""
    d = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def partition_segments(part: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(n, 4) segments x0, y0, x1, y1 outlining every window of a [rows, cols] id map: the lines
    between neighbouring tokens of different windows, merged along their length, plus the border."""
    segs = []
    for j in np.flatnonzero((part[:, 1:] != part[:, :-1]).any(axis=0)):
        for r0, r1 in runs(part[:, j + 1] != part[:, j]):
            segs.append((xs[j + 1], ys[r0], xs[j + 1], ys[r1]))
    for i in np.flatnonzero((part[1:] != part[:-1]).any(axis=1)):
        for c0, c1 in runs(part[i + 1] != part[i]):
            segs.append((xs[c0], ys[i + 1], xs[c1], ys[i + 1]))
    x0, y0, x1, y1 = xs[0], ys[0], xs[-1], ys[-1]
    segs += [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)]
    return np.asarray(segs, dtype=np.float64)


def token_rect(rect, xs: np.ndarray, ys: np.ndarray) -> Rect:
    """Half-open token rectangle (row0, col0, row1, col1) -> original pixels."""
    r0, c0, r1, c1 = rect
    return float(xs[c0]), float(ys[r0]), float(xs[c1]), float(ys[r1])


def region_rects(labels: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> list[tuple[int, Rect]]:
    """(label, rect) for every rectangle of constant label in a [rows, cols] region map. The mask's
    regions are products of row bands and column bands, so each label is one or a few rectangles."""
    out = []
    for lab in np.unique(labels).tolist():
        m = labels == lab
        for r0, r1 in runs(m.any(axis=1)):
            for c0, c1 in runs(m[r0:r1].all(axis=0)):
                out.append((int(lab), token_rect((r0, c0, r1, c1), xs, ys)))
    return out


def window_marks(analysis, stage: int, block: int, mode: str, regions: bool = True):
    """What to draw for a block: ([(segments, colour)] partitions, [(label, rect)] mask regions).
    mode: "block" (its own partition), "regular", "shifted" (the stage's), "both" or "none". Regions
    come with a shifted partition; where torchvision dropped the shift there are none."""
    a = analysis
    xs, ys = a.stage_grid(stage).edges()
    own = a.block(stage, block)
    shifted_blocks = [b for b in a.stage_blocks(stage) if b.shifted]
    wanted = {"block": [None], "regular": [False], "shifted": [True], "both": [False, True]}.get(mode, [])
    parts, any_shifted = [], False
    for w in wanted:
        is_shifted = own.shifted if w is None else bool(w and shifted_blocks)
        any_shifted |= is_shifted
        parts.append((partition_segments(a.window_partition(stage, block, w), xs, ys),
                      SHIFTED_COLOR if is_shifted else REGULAR_COLOR))
    labels = []
    if any_shifted and regions:
        src = own if own.shifted else shifted_blocks[0]
        labels = region_rects(a.mask_regions(stage, src.block), xs, ys)
    return parts, labels


def circular_span(used: np.ndarray) -> np.ndarray:
    """Indices of the shortest circular run covering every True of `used`: the complement of its
    longest circular gap. A window that wraps around the border comes back joined, in the model's
    (rolled) order; one that does not is its plain bounding range."""
    n = len(used)
    idx = np.flatnonzero(used)
    if len(idx) in (0, n):
        return np.arange(n)
    gaps = np.diff(np.concatenate([idx, [idx[0] + n]]))  # gap after each used index, circularly
    k = len(gaps) - 1 if gaps[-1] == gaps.max() else int(np.argmax(gaps))  # prefer not wrapping
    start = idx[(k + 1) % len(idx)]
    return (start + np.arange(n - gaps[k] + 1)) % n


def crop_to_window(maps: np.ndarray) -> np.ndarray:
    """(blocks, heads, rows, cols), NaN outside each block's window -> only the rows and columns the
    windows use, so heads x blocks tiles show the windows rather than a mostly black map."""
    finite = np.isfinite(maps).any(axis=(0, 1))
    return maps[..., circular_span(finite.any(axis=1)), :][..., circular_span(finite.any(axis=0))]


def trace_lines(steps, patch: tuple[float, float] = (4, 4)) -> list[str]:
    """One plain-text line per stage of a merge trace (SwinAnalysis.merge_trace); `patch` is the
    stage-0 token size (w, h) in model-input pixels."""
    lines = []
    for st in steps:
        r, c = st.token
        if not st.parts:
            lines.append(f"stage {st.stage}: token ({r}, {c}), a {patch[0]:g}×{patch[1]:g} px patch of the input")
            continue
        parts = ", ".join(f"{n} ({p[0]}, {p[1]})" if p is not None else f"{n} padding"
                          for n, p in zip(PART_NAMES, st.parts))
        lines.append(f"stage {st.stage}: token ({r}, {c}) ← {parts}; the point came via {PART_NAMES[st.via]}")
    return lines
