"""What the Swin panel exports (vitviz.gui.export): the window attention with the partition, mask
regions and the token's window drawn as vector marks; the windows alone; the attention summary;
the blocks x heads grid; the relative position bias; each head of the block.

Settings are the panel's view_settings() updated with overrides. The CLI's ViT-style keys are
understood too: "layer" counts blocks over all stages (negative from the end) when no "stage" /
"block" is given, and "query" ROW,COL picks a token of that block's stage ("cls": the panel's point).
"""
from __future__ import annotations

import numpy as np
from PySide6 import QtGui

from .panel_common import head_text
from .windows_overlay import REGION_COLORS, WINDOW_COLOR, crop_to_window, token_rect, window_marks


def _rgba(color: str, alpha: int = 255) -> tuple:
    c = QtGui.QColor(color)
    return c.red(), c.green(), c.blue(), alpha


def resolve(panel, settings: dict | None) -> dict:
    """The panel's settings with `settings` applied, checked. ExportError names what is wrong."""
    from ..export import ExportError, parse_head

    a = panel.analysis
    over = dict(settings or {})
    s = {"model_view": panel.model_view_check.isChecked(), **panel.view_settings(), **over}
    if "layer" in over and "stage" not in over and "block" not in over:
        n = len(a.blocks)
        i = int(over["layer"])
        if not -n <= i < n:
            raise ExportError(f"layer {over['layer']} is out of range (the model has {n} blocks over "
                              f"{a.num_stages} stages: 0..{n - 1})")
        s["stage"], s["block"] = a.blocks[i].stage, a.blocks[i].block
    stage, block = int(s["stage"]), int(s["block"])
    if not 0 <= stage < a.num_stages:
        raise ExportError(f"stage {stage} is out of range (the model has {a.num_stages} stages: "
                          f"0..{a.num_stages - 1})")
    if not 0 <= block < a.num_blocks(stage):
        raise ExportError(f"block {block} is out of range (stage {stage} has {a.num_blocks(stage)} blocks)")
    heads = a.block(stage, block).heads
    head = parse_head(s["head"], heads, f"stage {stage}")
    grid = a.stage_grid(stage)
    query = over.get("query", "cls")
    if not (isinstance(query, str) and query.lower() == "cls"):
        r, c = (int(v) for v in query)
        if not (0 <= r < grid.rows and 0 <= c < grid.cols):
            raise ExportError(f"query: token ({r}, {c}) outside the {grid.rows}x{grid.cols} grid of stage {stage}")
        x0, y0, x1, y1 = grid.rect(r, c)
        vx0, vy0, vx1, vy1 = a.grid.transform.visible_rect()
        s["point"] = [(max(x0, vx0) + min(x1, vx1)) / 2, (max(y0, vy0) + min(y1, vy1)) / 2]
    point = s.get("point") or panel.point
    token = grid.token_at(*point) if point is not None else None
    if token is None:
        raise ExportError("no token selected: the point is outside what the model saw")
    if s["direction"] not in ("from", "to"):
        raise ExportError(f"direction must be 'from' or 'to', not {s['direction']!r}")
    s.update(stage=stage, block=block, head=head, point=[float(v) for v in point], token=list(token),
             opacity=float(s["opacity"]), grid=bool(s["grid"]), regions=bool(s.get("regions", True)),
             summary=bool(s.get("summary", False)), model_view=bool(s["model_view"]),
             partition=str(s.get("partition", "block")))
    return s


def window_shapes(a, s: dict) -> list:
    """The partition lines, mask regions and the token's window pieces as export shapes."""
    from ..export import Shape

    stage, block = s["stage"], s["block"]
    xs, ys = a.stage_grid(stage).edges()
    parts, regions = window_marks(a, stage, block, s["partition"], s["regions"])
    shapes = []
    for lab, rect in regions:
        color = REGION_COLORS[lab % len(REGION_COLORS)]
        shapes.append(Shape("rect", rect, _rgba(color), 1.0, label=str(lab),
                            fill=_rgba(color, 45) if lab else None, dashed=True))
    shapes += [Shape("lines", segs, _rgba(color), 2.5) for segs, color in parts]
    for piece in a.window_rects(stage, block, *s["token"]):
        shapes.append(Shape("rect", token_rect(piece, xs, ys), _rgba(WINDOW_COLOR), 3.0))
    return shapes


def export_sources(panel, settings: dict | None = None):
    from ..export import (ExportError, ExportSources, MapView, TileGrid, crop_shade, grid_lines,
                          selection_rect)

    a = panel.analysis
    if a is None:
        raise ExportError("Nothing to export: no image has been analysed yet")
    s = resolve(panel, settings)
    stage, block, head, direction = s["stage"], s["block"], s["head"], s["direction"]
    token = tuple(s["token"])
    b = a.block(stage, block)
    grid = a.stage_grid(stage)
    kind = "shifted" if b.shifted else "regular"
    where = (f"stage {stage} (the paper's stage {stage + 1}) block {block}, "
             f"{kind} {b.window[0]}×{b.window[1]} windows")
    how = "where it looks" if direction == "from" else "how much each token of its window attends to it"
    shade = crop_shade(a.grid.transform.visible_rect())
    vr = panel.main_view.vb.viewRect()
    base = dict(image=np.asarray(a.image), opacity=s["opacity"],
                view_rect=(vr.left(), vr.top(), vr.right(), vr.bottom()))
    if s["model_view"]:
        base.update(image=a.input_image(), image_rect=a.grid.extent())
    marks = [shade] + ([grid_lines(*grid.edges())] if s["grid"] else [])
    marks += window_shapes(a, s) + [selection_rect(grid.rect(*token))]
    common = {"stage": stage, "block": block, "token": list(token), "direction": direction}

    def attention(h, title):
        return MapView(title, f"Window attention {direction} token ({token[0]}, {token[1]}) ({how}), {where}, "
                              f"{f'head {h}' if isinstance(h, int) else f'{h} over {b.heads} heads'}; "
                              "blank outside the token's window.",
                       values=a.attention_map(stage, block, h, token, direction), extent=grid.extent(),
                       shapes=marks, meta={"method": "window attention", "head": h, **common}, **base)

    views = {"attention": attention(head, f"Attention {direction} token {token} · stage {stage} block {block} · "
                                          f"{head_text(head)}")}
    views["windows"] = MapView(f"Windows · stage {stage} block {block} ({kind})",
                               f"Window partition of {where}, the mask regions and the window of token "
                               f"({token[0]}, {token[1]}).", shapes=marks,
                               meta={"method": "windows", "partition": s["partition"], **common}, **base)
    last = a.num_stages - 1
    sum_head = head if not isinstance(head, int) or head < a.blocks[-1].heads else "mean"
    views["summary"] = MapView(
        f"Where the model looks · stage {last}", f"Attention each token of stage {last} receives, averaged "
        f"over its blocks and all queries ({head_text(sum_head)}).",
        values=a.attention_summary(-1, sum_head), extent=a.stage_grid(last).extent(),
        value_label="attention received",
        shapes=[shade] + ([grid_lines(*a.stage_grid(last).edges())] if s["grid"] else []),
        meta={"method": "attention summary", "stage": last, "head": sum_head}, **base)
    maps = crop_to_window(a.head_maps(stage, token, direction))
    views["grid"] = TileGrid(
        f"Attention {direction} token {token} · stage {stage} · every block × head",
        f"Window attention {direction} token ({token[0]}, {token[1]}) for every block and head of stage {stage}, "
        "cropped to the windows (a window wrapping around the border shown joined, as the model sees it)",
        maps, "block", "head", row_labels=[f"B{i}" for i in range(len(maps))],
        selected=(block, head if isinstance(head, int) else None), meta={"method": "attention per head", **common})
    bias = a.relative_position_bias(stage, block)
    views["bias"] = TileGrid(
        f"Relative position bias · stage {stage} block {block}",
        f"Bias added to the attention logits by offset (query − key) within a {b.window[0]}×{b.window[1]} "
        "window, centre = same position", bias[None], "block", "head", row_labels=[f"B{block}"],
        selected=(0, head if isinstance(head, int) else None), value_label="bias",
        meta={"method": "relative position bias", "stage": stage, "block": block})
    for h in range(b.heads):
        views[f"head:{h}"] = attention(h, f"Stage {stage} block {block} · head {h}")
    focus = {panel.grid_view: "grid", panel.bias_view: "bias"}
    current = next((name for w, name in focus.items() if w.hasFocus()),
                   "summary" if s["summary"] else "attention")
    return ExportSources(views, s, colormap=s["colormap"], current=current)
