"""How DETR's figures mark detections and the encoder probe: box colours by rank, score labels
placed so they do not cover each other, the thick selected box, the probe's cell outline. Qt-free
(colours as RGBA tuples); the GUI's boxes, list and matrix use the same palette
(vitviz.gui.views.boxes), so every view agrees.

A detection's colour comes from its rank (highest score first), so a box keeps its colour when the
threshold changes."""
from __future__ import annotations

from ..figures import Shape, selection_rect

# Okabe-Ito (colour-blind safe) without its black, then five more hues. No near-white or very
# dark colour: each stands out from white (the light theme) and from the views' #202124 (the
# matrix's empty cells), and from the others (CIELAB distance >= 25). Cycles after 12.
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
           "#66A61E", "#E7298A", "#9467BD", "#A6761D", "#17BECF")

SELECTED_WIDTH = 3.0  # figure units (1/96 inch), as the panel's thick / thin outlines
OTHER_WIDTH = 1.5


def box_hex(rank: int) -> str:
    return PALETTE[rank % len(PALETTE)]


def box_rgba(rank: int) -> tuple:
    h = box_hex(rank).lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255


def score_text(p: float) -> str:
    """Two decimals, three for the small scores of untrained models (0.038, not 0.04)."""
    return f"{p:.2f}" if p >= 0.1 else f"{p:.3f}"


def label_text(d) -> str:
    return f"{d.name} {score_text(d.score)}"


def detection_shapes(dets, query: int | None, only_selected: bool = False) -> list[Shape]:
    """Boxes in their list colours, best drawn last (on top), the selected one thick and on top of
    all, the others dashed when an object is selected (as in the panel)."""
    shapes, chosen = [], None
    for rank in reversed(range(len(dets))):
        d = dets[rank]
        selected = d.query == query
        if only_selected and not selected:
            continue
        shape = Shape("rect", tuple(float(v) for v in d.box), box_rgba(rank),
                      SELECTED_WIDTH if selected else OTHER_WIDTH, label=label_text(d),
                      dashed=query is not None and not selected)
        if selected:
            chosen = shape
        else:
            shapes.append(shape)
    return shapes + ([chosen] if chosen is not None else [])


def point_marker(a, point, cell) -> list[Shape]:
    """The encoder probe: its feature cell outlined in red, the point a white square ringed black."""
    x0, y0, x1, y1 = a.grid.rect(*cell)
    r = max(1.0, min(x1 - x0, y1 - y0) * 0.1)
    x, y = point
    return [selection_rect((x0, y0, x1, y1)),
            Shape("rect", (x - r, y - r, x + r, y + r), (0, 0, 0, 255), 1.5, fill=(255, 255, 255, 255))]


# -- label placement -------------------------------------------------------------------------------
def _overlap(a, b, tol: float = 0.0) -> float:
    """The area two rectangles share; 0 when they share a strip no wider than `tol` (touching)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > tol and h > tol else 0.0


def _candidates(box, size, bounds, stack: int, inside_first: bool = False):
    """Top-left corners to try for a label of `size` on `box`, best first: on the top edge outside
    (above), inside at the top (these two swapped if `inside_first`), below the box, inside at the
    bottom, the same at the right edge, then stacked further above and below. Each kept inside
    `bounds`."""
    x0, y0, x1, y1 = box
    w, h = size
    bx0, by0, bx1, by1 = bounds
    spots = [(x0, y0 - h), (x0, y0), (x0, y1), (x0, y1 - h),
             (x1 - w, y0 - h), (x1 - w, y0), (x1 - w, y1), (x1 - w, y1 - h)]
    if inside_first:
        spots[0], spots[1] = spots[1], spots[0]
    for k in range(1, stack + 1):
        spots += [(x0, y0 - h * (k + 1)), (x0, y1 + h * k), (x1 - w, y0 - h * (k + 1)), (x1 - w, y1 + h * k)]
    for x, y in spots:
        yield min(max(x, bx0), max(bx0, bx1 - w)), min(max(y, by0), max(by0, by1 - h))


def place_labels(boxes, sizes, bounds, stack: int = 4, tol: float = 0.0,
                 inside_first: bool = False) -> list[tuple[float, float]]:
    """Top-left corners for the labels of `boxes` ((x0, y0, x1, y1), y down) of `sizes` ((w, h)),
    all in one unit (screen or figure units: the labels' size is fixed there), inside `bounds`.
    Earlier boxes choose first (give the selected one, then the best). A label takes the first
    spot of _candidates that no label placed before it overlaps; where every spot is taken, the
    one it overlaps least. Labels sharing a strip no wider than `tol` (a pixel or two) count as
    touching, not overlapping. On screen a label sits above its box; in exported figures
    (`inside_first`) inside its top-left corner, as vitviz 0.1 drew them."""
    placed: list[tuple] = []
    out = []
    for box, (w, h) in zip(boxes, sizes):
        best, best_cost = None, None
        for x, y in _candidates(box, (w, h), bounds, stack, inside_first):
            rect = (x, y, x + w, y + h)
            cost = sum(_overlap(rect, p, tol) for p in placed)
            if best_cost is None or cost < best_cost - 1e-9:
                best, best_cost = (x, y), cost
            if cost == 0:
                break
        placed.append((best[0], best[1], best[0] + w, best[1] + h))
        out.append(best)
    return out


def label_order(n: int, selected_rank: int | None) -> list[int]:
    """The order labels choose their spots in: the selected detection, then best first."""
    ranks = list(range(n))
    if selected_rank is not None and 0 <= selected_rank < n:
        ranks.remove(selected_rank)
        ranks.insert(0, selected_rank)
    return ranks
