"""Figure layouts: one view, panels side by side (one colour scale), the heads x layers grid; each
with its title, colorbar and caption, on a canvas of whole PDF points (or a 16:9 slide).

build_figure() turns a panel's ExportSources and an ExportRequest into a Figure of drawables
(export_painter), in figure units of 1/96 inch.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore

from ..core.colormaps import OVERLAY_TEXT, map_values
from ..core.figures import ExportError, ExportSources, MapView, TileGrid
from .export_request import ExportContext, ExportRequest
from .export_painter import (THEMES, Colorbar, Figure, MapPanel, Text, Theme, Tiles, elide, text_width,
                             wrapped_height)
from ..core.figures import normalise_tiles

MARGIN = 20.0


def finite_range(arrays) -> tuple[float, float]:
    vals = [a[np.isfinite(a)] for a in arrays if a is not None]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round values in [lo, hi]: the finest 1/2/2.5/5 x 10^k step giving at most `most` ticks."""
    span = hi - lo
    if not span > 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / most))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= most:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    return [round(float(v), 12) for v in np.arange(first, hi + step * 1e-6, step)]


def shown_rect(v: MapView) -> tuple:
    """What a whole-view export shows: the image where there is one, as on screen (a map overhanging
    it, over the padded edge of a DETR input, is cut at the image's edge), else the map."""
    return v.placed_image_rect() or v.full_rect()


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _colorbar(x: float, top: float, height: float, cmap: str, lo: float, hi: float, label: str,
              theme: Theme, ticks=None, overlay: str = "blend", opacity: float = 1.0) -> tuple[list, float]:
    """Colorbar items at (x, top); returns (items, right edge). An "alpha" overlay's bar shows its
    one colour at each value's opacity over the page, and its label says so."""
    ticks = ticks or [(t, _fmt(t)) for t in nice_ticks(lo, hi)]
    size = 12.0
    tw = max(text_width(t, size) for _, t in ticks)
    if overlay != "blend":
        label = f"{label} ({OVERLAY_TEXT[overlay]})"
    bar = Colorbar((x, top, 16.0, height), cmap, lo, hi, ticks, label, theme.fg, size, overlay, opacity, theme.bg)
    lx = x + 16 + 7 + tw + 8
    lab = Text((lx, top, size + 6, height), label, size + 1, theme.fg, vertical=True,
               align=int(QtCore.Qt.AlignmentFlag.AlignCenter))
    return [bar, lab], lx + size + 6


def _finish(fig: Figure, content_w: float, content_h: float, request: ExportRequest) -> Figure:
    """Canvas size (16:9 if asked, content centred), rounded up to whole PDF points."""
    if request.aspect == "16:9":  # exactly 16:9 in whole multiples of 4 units
        m = math.ceil(max(content_w / 64, content_h / 36))
        w, h = 64 * m, 36 * m
    elif request.aspect in ("auto", "", None):
        w, h = math.ceil(content_w / 4) * 4, math.ceil(content_h / 4) * 4  # 4 units = 3 whole points
    else:
        raise ExportError(f"unknown aspect {request.aspect!r} (use auto or 16:9)")
    dx, dy = (w - content_w) / 2, (h - content_h) / 2
    for item in fig.items:
        _shift(item, dx, dy)
    for pan in fig.panels:
        pan["rect"] = [round(v + (dx, dy)[i % 2], 4) for i, v in enumerate(pan["rect"])]
        if "origin" in pan:
            pan["origin"] = [round(pan["origin"][0] + dx, 4), round(pan["origin"][1] + dy, 4)]
    fig.width, fig.height = float(w), float(h)
    return fig


def _shift(item, dx: float, dy: float) -> None:
    if isinstance(item, Tiles):
        item.origin = (item.origin[0] + dx, item.origin[1] + dy)
    else:
        x, y, *rest = item.rect
        item.rect = (x + dx, y + dy, *rest)


def _names(views) -> str:
    """View names for messages, "head:0…head:11" runs shortened."""
    out, run = [], []
    for n in list(views) + [""]:
        prefix = n.split(":")[0] + ":" if ":" in n else None
        if run and (prefix is None or not run[0].startswith(prefix)):
            out.append(run[0] if len(run) == 1 else f"{run[0]}…{run[-1]}")
            run = []
        if prefix is not None:
            run.append(n)
        elif n:
            out.append(n)
    return ", ".join(out)


def _caption(ctx: ExportContext, parts: list[str]) -> str:
    return "\n".join([f"{ctx.image_name} · {ctx.model} ({ctx.weights_text()})", *parts])


def build_figure(sources: ExportSources, request: ExportRequest, ctx: ExportContext) -> Figure:
    if not request.views:
        raise ExportError("Nothing to export: no view chosen")
    missing = [n for n in request.views if n not in sources.views]
    if missing:
        raise ExportError(f"The {missing[0]!r} view is not available for this model ({ctx.model}, a "
                          f"{ctx.family} model); available: {_names(sources.views)}")
    theme = THEMES.get(request.theme)
    if theme is None:
        raise ExportError(f"unknown theme {request.theme!r} (use light or dark)")
    views = [sources.views[n] for n in request.views]
    if len(views) == 1 and isinstance(views[0], TileGrid):
        return _grid_figure(request.views[0], views[0], sources, request, ctx, theme)
    if any(isinstance(v, TileGrid) for v in views):
        raise ExportError("A grid can only be exported on its own, not side by side with other views")
    return _maps_figure(views, sources, request, ctx, theme)


def _maps_figure(views, sources, request, ctx, theme) -> Figure:
    n = len(views)
    kind = "view" if n == 1 else "comparison"
    fixed = views[0].levels if n == 1 else None
    lo, hi = fixed if fixed is not None else finite_range([v.values for v in views])
    region = tuple(float(v) for v in request.region) if request.region else None
    ncols = n if n <= 4 else math.ceil(n / math.ceil(n / 4))
    nrows = math.ceil(n / ncols)
    base = {1: 640.0, 2: 460.0, 3: 380.0}.get(n, 300.0)
    regions = [region or shown_rect(v) for v in views]
    a = max(1e-6, (regions[0][2] - regions[0][0]) / max(1e-6, regions[0][3] - regions[0][1]))
    pw, ph = base, base / a
    if ph > base * 1.2:
        ph = base * 1.2
        pw = ph * a
    title_h = 26.0 if request.title else 0.0
    gap = 16.0
    fig = Figure(kind, 0, 0, theme)
    for i, (name, v, reg) in enumerate(zip(request.views, views, regions)):
        row, col = divmod(i, ncols)
        x = MARGIN + col * (pw + gap)
        y = MARGIN + row * (title_h + ph + gap) + title_h
        if request.title:
            fig.items.append(Text((x, y - title_h, pw, title_h - 4), elide(v.title, pw, 14.0, n == 1), 14.0,
                                  theme.fg, bold=n == 1,
                                  align=int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignBottom)))
        fig.items.append(MapPanel((x, y, pw, ph), v, reg, (lo, hi), sources.colormap, theme.empty))
        fig.panels.append({"name": name, "title": v.title, "rect": [x, y, x + pw, y + ph],
                           "region": list(reg), "levels": [lo, hi], **v.meta})
    right = MARGIN + ncols * pw + (ncols - 1) * gap
    bottom = MARGIN + nrows * (title_h + ph + gap) - gap
    has_values = any(v.values is not None for v in views)
    if fixed is not None:
        mode, how = "fixed", f"fixed scale {_fmt(lo)} to {_fmt(hi)}"
    elif n == 1:
        mode, how = "map", f"scaled to this map's min–max ({_fmt(lo)} to {_fmt(hi)})"
    else:
        mode, how = "shared", f"one scale shared by all panels ({_fmt(lo)} to {_fmt(hi)})"
    fig.scale = {"mode": mode, "levels": [lo, hi], "colormap": sources.colormap} if has_values else {}
    if request.colorbar and has_values:
        label = " / ".join(dict.fromkeys(v.value_label for v in views if v.values is not None))
        first = next(v for v in views if v.values is not None)
        items, right = _colorbar(right + 18, MARGIN + title_h, bottom - MARGIN - title_h, sources.colormap,
                                 lo, hi, label, theme, overlay=first.overlay,
                                 opacity=first.opacity if first.overlay == "alpha" else 1.0)
        fig.items += items
    parts = [v.description for v in views] if n == 1 else \
        ["Left to right: " + "; ".join(v.description.rstrip(".") for v in views) + "."]
    if has_values:
        alpha = any(v.overlay == "alpha" for v in views if v.values is not None)
        parts.append(f"Colour: {sources.colormap}{' top colour, value = opacity' if alpha else ''}, {how}.")
    return _with_caption(fig, request, ctx, parts, right, bottom, theme)


def _with_caption(fig, request, ctx, parts, right, bottom, theme) -> Figure:
    fig.caption = _caption(ctx, parts)
    width = right + MARGIN
    if request.caption:
        cw = width - 2 * MARGIN
        if request.aspect == "16:9":  # a slide has room beside a tall figure: use it, on the same canvas
            natural = max(text_width(line, 12.0) for line in fig.caption.splitlines()) + 4
            cw = max(cw, min(natural, (bottom + 120) * 16 / 9 - 2 * MARGIN))
            width = cw + 2 * MARGIN
        ch = wrapped_height(fig.caption, 12.0, cw) + 2
        fig.items.append(Text((MARGIN, bottom + 12, cw, ch), fig.caption, 12.0, theme.muted, wrap=True,
                              align=int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)))
        bottom += 12 + ch
    return _finish(fig, width, bottom + MARGIN, request)


def _pick(indices, n: int, what: str) -> list[int]:
    if indices is None:
        return list(range(n))
    out = [int(i) + n if int(i) < 0 else int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        raise ExportError(f"{what} {bad[0] if bad else '(none)'} is not in 0..{n - 1}")
    return out


def _grid_figure(name, g: TileGrid, sources, request, ctx, theme) -> Figure:
    L, H, r, c = g.maps.shape
    rows, cols = _pick(request.rows, L, g.row_name), _pick(request.cols, H, g.col_name)
    maps = g.maps[np.ix_(rows, cols)]
    R, C = len(rows), len(cols)
    row_labels = [(g.row_labels or [f"L{i}" for i in range(L)])[i] for i in rows]
    col_labels = [(g.col_labels or [f"H{j}" for j in range(H)])[j] for j in cols]
    if request.tile_scale == "tile":
        norm, lo, hi = normalise_tiles(maps), 0.0, 1.0
        how = "each tile scaled to its own min–max (brightness is not comparable between tiles)"
        ticks, bar_label = [(0.0, "min"), (1.0, "max")], f"{g.value_label} (per tile)"
    elif request.tile_scale == "shared":
        lo, hi = finite_range([maps])
        norm = maps
        how = f"one scale shared by all tiles ({_fmt(lo)} to {_fmt(hi)})"
        ticks, bar_label = None, g.value_label
    else:
        raise ExportError(f"unknown tile scale {request.tile_scale!r} (use tile or shared)")
    rgba = map_values(sources.colormap, np.nan_to_num(norm, nan=lo), lo, hi)
    rgba[~np.isfinite(norm)] = 0  # no value (DETR padding): transparent, never a colour of the scale
    ta = g.tile_aspect or c / r
    box_w, box_h = (1180.0, 600.0) if request.aspect == "16:9" else (960.0, 880.0)
    tw = min(box_w / C, box_h / R * ta, 150.0)
    gap = max(2.0, round(tw * 0.05))
    tw = min((box_w - (C - 1) * gap) / C, (box_h - (R - 1) * gap) / R * ta, 150.0)
    th = tw / ta
    fs = float(min(14, max(8, round(min(th, tw) * 0.4))))
    title_h = 26.0 if request.title else 0.0
    axis = fs + 8
    lab_w = max(text_width(t, fs) for t in row_labels) + 8
    gx, gy = MARGIN + axis + lab_w, MARGIN + title_h + axis + fs + 6
    gw, gh = C * tw + (C - 1) * gap, R * th + (R - 1) * gap
    fig = Figure("grid", 0, 0, theme)
    if request.title:
        fig.items.append(Text((MARGIN, MARGIN, gx + gw - MARGIN, title_h - 4), g.title, 15.0, theme.fg, bold=True))
    fig.items.append(Text((gx, MARGIN + title_h, gw, axis), g.col_name + "s", fs + 1, theme.fg,
                          align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    fig.items.append(Text((MARGIN, gy, axis, gh), g.row_name + "s", fs + 1, theme.fg, vertical=True,
                          align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    step_c = max(1, math.ceil((text_width(max(col_labels, key=len), fs) + 4) / (tw + gap)))
    step_r = max(1, math.ceil((fs + 2) / (th + gap)))
    for j in range(0, C, step_c):
        fig.items.append(Text((gx + j * (tw + gap) - gap, gy - fs - 6, tw + 2 * gap, fs + 4), col_labels[j], fs,
                              theme.fg, align=int(QtCore.Qt.AlignmentFlag.AlignCenter)))
    for i in range(0, R, step_r):
        fig.items.append(Text((MARGIN + axis, gy + i * (th + gap), lab_w - 6, th), row_labels[i], fs, theme.fg,
                              align=int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)))
    sel = None
    if g.selected is not None and g.selected[0] in rows and (g.selected[1] is None or g.selected[1] in cols):
        sel = (rows.index(g.selected[0]), None if g.selected[1] is None else cols.index(g.selected[1]))
        if sel[1] is None and len(cols) != H:
            sel = None  # a whole-row outline over a subset of heads would mislead
    fig.items.append(Tiles((gx, gy), (tw, th), gap, rgba, sel))
    fig.panels.append({"name": name, "title": g.title, "rect": [gx, gy, gx + gw, gy + gh],
                       "origin": [gx, gy], "tile": [tw, th], "gap": gap,
                       "rows": rows, "cols": cols, "tile_scale": request.tile_scale, **g.meta})
    fig.scale = {"mode": "per-tile" if request.tile_scale == "tile" else "shared", "levels": [lo, hi],
                 "colormap": sources.colormap}
    right = gx + gw
    if request.colorbar:
        items, right = _colorbar(right + 18, gy, min(gh, max(120.0, gh)), sources.colormap, lo, hi,
                                 bar_label, theme, ticks)
        fig.items += items
    def span(name_, idx, labels):
        return f"{name_}s {labels[0]}–{labels[-1]}" if idx == list(range(idx[0], idx[-1] + 1)) \
            else f"{name_}s " + ", ".join(labels)
    parts = [g.description + f"; rows: {span(g.row_name, rows, row_labels)}, columns: "
             f"{span(g.col_name, cols, col_labels)}.", f"Colour: {sources.colormap}, {how}."]
    return _with_caption(fig, request, ctx, parts, right, gy + gh, theme)

