"""What the DETR panel exports (vitviz.gui.export).

Views:
  "detections"  the image, every detection above the threshold as a vector box in its list colour
                with a "class score" label, over the selected object's decoder cross-attention;
  "attention"   what the panel's main view shows: the selected object's cross-attention (its box
                alone marked), or, when the point has the focus or no object is selected, the
                encoder self-attention at the point;
  "encoder"     the encoder self-attention at the point, its feature cell outlined, the point marked;
  "grid"        layers x heads for the selected object (decoder) or the point (encoder);
  "head:H"      the "attention" view for head H of the layer.

Settings are the panel's view_settings() updated with overrides:
  threshold     float in [0, 1]: detections are the queries whose best class beats it;
  layer         counts over max(decoder, encoder) layers, negative from the end; each stack uses
                min(layer, its last layer), as the panel does;
  head          a head index, or mean | max | min;
  query         which object: an int N (or "N") is DETECTION N, the N-th best above the threshold
                (0 = the best); "qN" is decoder QUERY N, any of the model's queries (as the panel's
                list shows it: "· query N"); [row, col] probes the ENCODER at that feature cell;
                "cls" or absent: the panel's selection (else the best detection); None: no object;
  point         [x, y] in original pixels: the encoder probe (its feature cell must not be padding);
  direction     from | to (encoder); focus: query | point (what "attention" and "grid" show);
  colormap, opacity, grid as everywhere.
The resolved settings record the object as "qN" (and its rank as "detection"), so a sidecar
reproduces the figure. Feature cells made only of padding carry NaN: never drawn, in any view.
"""
from __future__ import annotations

import numpy as np

from .boxes import box_color, score_text
from .panel_common import head_text

SELECTED_WIDTH = 3.0  # figure units (1/96 inch), as the panel's thick / thin outlines
OTHER_WIDTH = 1.5


def _rgba(qcolor) -> tuple:
    return qcolor.red(), qcolor.green(), qcolor.blue(), 255


def _parse_query(value, a, dets):
    """-> ("query", q) | ("cell", (row, col)) | ("default", None) | ("none", None)."""
    from ..export import ExportError

    if value is None:
        return "none", None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("cls", ""):
            return "default", None
        if text == "none":
            return "none", None
        if text.startswith("q") and text[1:].isdigit():
            q = int(text[1:])
            if q >= a.num_queries:
                raise ExportError(f"query {value}: the model has {a.num_queries} object queries (q0..q{a.num_queries - 1})")
            return "query", q
        if text.isdigit():
            value = int(text)
        elif "," in text:
            value = text.split(",")
        else:
            raise ExportError(f"query must be a detection number, qN (a query), ROW,COL (an encoder cell) "
                              f"or cls, not {value!r}")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        k = int(value)
        if not 0 <= k < len(dets):
            have = f"detections 0..{len(dets) - 1}" if dets else "none"
            raise ExportError(f"detection {k}: {len(dets)} object(s) score above the threshold ({have}); "
                              "lower the threshold, or name a query as qN")
        return "query", dets[k].query
    try:
        row, col = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ExportError(f"query must be a detection number, qN, ROW,COL or cls, not {value!r}") from None
    return "cell", (row, col)


def _check_cell(a, row: int, col: int) -> tuple[int, int]:
    from ..export import ExportError

    rows, cols = a.feature_shape
    if not (0 <= row < rows and 0 <= col < cols):
        raise ExportError(f"cell ({row}, {col}) is outside the {rows}x{cols} feature map")
    if a.pad_mask[row, col]:
        raise ExportError(f"cell ({row}, {col}) is padding: it has no attention to show")
    return row, col


def resolve(panel, settings: dict | None) -> dict:
    """The panel's settings with `settings` applied, checked. ExportError names what is wrong."""
    from ..colormaps import COLORMAPS
    from ..export import ExportError, parse_head

    a = panel.analysis
    over = dict(settings or {})
    s = {**panel.view_settings(), **over}
    try:
        threshold = float(s["threshold"])
    except (TypeError, ValueError):
        raise ExportError(f"threshold must be a number in [0, 1], not {s['threshold']!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise ExportError(f"threshold must be in [0, 1], not {threshold}")
    dets = a.detections(threshold)
    n = max(a.num_layers, a.num_encoder_layers)
    try:
        layer = int(s["layer"])
    except (TypeError, ValueError):
        raise ExportError(f"layer must be a number, not {s['layer']!r}") from None
    layer = layer + n if layer < 0 else layer
    if not 0 <= layer < n:
        raise ExportError(f"layer {s['layer']} is out of range (the model has {a.num_layers} decoder and "
                          f"{a.num_encoder_layers} encoder layers: 0..{n - 1})")
    head = parse_head(s["head"], a.num_heads)
    if s["direction"] not in ("from", "to"):
        raise ExportError(f"direction must be 'from' or 'to', not {s['direction']!r}")
    if s["colormap"] not in COLORMAPS:
        raise ExportError(f"unknown colormap {s['colormap']!r}; choose one of {', '.join(COLORMAPS)}")

    kind, found = _parse_query(over["query"], a, dets) if "query" in over else ("default", None)
    queries = [d.query for d in dets]
    if kind == "default":
        query = panel.query if panel.query in queries else (queries[0] if queries else None)
    else:
        query = found if kind == "query" else None
    if kind == "cell":
        row, col = _check_cell(a, *found)
        w, h = a.image.size
        x, y = a.cell_center(row, col)
        point = (min(max(x, 0.0), w - 0.5), min(max(y, 0.0), h - 0.5))  # as the panel's select_cell
        cell = (row, col)
    else:
        try:
            point = tuple(float(v) for v in s.get("point"))
        except (TypeError, ValueError):
            point = ()
        if len(point) != 2:
            raise ExportError(f"point must be [x, y] in image pixels, not {s.get('point')!r}")
        cell = a.cell_at(*point)
        if cell is None:
            w, h = a.image.size
            raise ExportError(f"point ({point[0]:.1f}, {point[1]:.1f}) is not on the image ({w} x {h} pixels)")
    if "focus" in over:
        focus = over["focus"]
        if focus not in ("query", "point"):
            raise ExportError(f"focus must be 'query' or 'point', not {focus!r}")
    elif kind in ("query", "none"):
        focus = "query"
    elif kind == "cell" or "point" in over:
        focus = "point"
    else:
        focus = panel.focus
    if focus == "query" and query is None:
        focus = "point"  # no object to show: the point instead, as the panel does
    s.update(threshold=threshold, layer=layer, decoder_layer=min(layer, a.num_layers - 1),
             encoder_layer=min(layer, a.num_encoder_layers - 1), head=head,
             query=None if query is None else f"q{query}",
             detection=queries.index(query) if query in queries else None, detections=queries,
             point=[float(point[0]), float(point[1])], cell=[int(cell[0]), int(cell[1])], focus=focus,
             opacity=float(s["opacity"]), grid=bool(s["grid"]))
    return s


def detection_shapes(dets, query: int | None, only_selected: bool = False) -> list:
    """Boxes in their list colours, best drawn last (on top), the selected one thick and on top of
    all, the others dashed when an object is selected (as in the panel)."""
    from ..export import Shape

    shapes, chosen = [], None
    for rank in reversed(range(len(dets))):
        d = dets[rank]
        selected = d.query == query
        if only_selected and not selected:
            continue
        shape = Shape("rect", tuple(float(v) for v in d.box), _rgba(box_color(rank)),
                      SELECTED_WIDTH if selected else OTHER_WIDTH, label=f"{d.name} {score_text(d.score)}",
                      dashed=query is not None and not selected)
        if selected:
            chosen = shape
        else:
            shapes.append(shape)
    return shapes + ([chosen] if chosen is not None else [])


def point_marker(a, point, cell) -> list:
    """The encoder probe: its feature cell outlined in red, the point a white square ringed black."""
    from ..export import Shape, selection_rect

    x0, y0, x1, y1 = a.grid.rect(*cell)
    r = max(1.0, min(x1 - x0, y1 - y0) * 0.1)
    x, y = point
    return [selection_rect((x0, y0, x1, y1)),
            Shape("rect", (x - r, y - r, x + r, y + r), (0, 0, 0, 255), 1.5, fill=(255, 255, 255, 255))]


def export_sources(panel, settings: dict | None = None):
    from ..export import ExportError, ExportSources, MapView, TileGrid, crop_shade, grid_lines

    a = panel.analysis
    if a is None:
        raise ExportError("Nothing to export: no image has been analysed yet")
    s = resolve(panel, settings)
    threshold, head, direction = s["threshold"], s["head"], s["direction"]
    dl, el = s["decoder_layer"], s["encoder_layer"]
    dets = a.detections(threshold)
    query = None if s["query"] is None else int(s["query"][1:])
    cell, point = tuple(s["cell"]), tuple(s["point"])
    H = a.num_heads

    marks = []
    w, h = a.image.size
    visible = a.grid.transform.visible_rect()
    if visible != (0.0, 0.0, float(w), float(h)):
        marks.append(crop_shade(visible))
    if s["grid"]:
        marks.append(grid_lines(*a.grid.edges()))
    zoom = panel.det_view.vb.viewRect()
    base = dict(image=np.asarray(a.image), extent=a.grid.extent(), opacity=s["opacity"],
                view_rect=(zoom.left(), zoom.top(), zoom.right(), zoom.bottom()))
    blank = " Feature cells made only of padding are blank." if a.pad_mask.any() else ""
    heads_long = {h_: f"head {h_}" if isinstance(h_, int) else f"{h_} over {H} heads" for h_ in [head, *range(H)]}

    obj = obj_long = ""
    if query is not None:
        rank = s["detection"]
        d = dets[rank] if rank is not None else None
        name = d.name if d is not None else a.class_name(int(np.argmax(a.probabilities()[query, :-1])))
        obj = f"{name} (query {query})"
        obj_long = (f"the {name} detected with probability {score_text(d.score)} (query {query}, thick box)"
                    if d is not None else f"query {query} ({name}, below the threshold)")

    def cross(hd, title, shapes):
        return MapView(title, f"Decoder cross-attention of {obj_long}: where that object query looks in the "
                              f"image, decoder layer {dl}, {heads_long[hd]}.{blank}",
                       values=a.cross_attention(dl, hd, query), shapes=marks + shapes,
                       value_label="cross-attention",
                       meta={"method": "decoder cross-attention", "layer": dl, "head": hd, "query": query},
                       **base)

    arrow = "from" if direction == "from" else "to"
    how = "where it looks" if direction == "from" else "how much each cell attends to it"

    def encoder(hd, title):
        return MapView(title, f"Encoder self-attention {arrow} feature cell ({cell[0]}, {cell[1]}) ({how}), "
                              f"encoder layer {el}, {heads_long[hd]}; the point at ({point[0]:.0f}, "
                              f"{point[1]:.0f}) px, its cell outlined in red.{blank}",
                       values=a.encoder_attention_map(el, hd, direction=direction, cell=cell),
                       shapes=marks + point_marker(a, point, cell), value_label="encoder attention",
                       meta={"method": "encoder self-attention", "layer": el, "head": hd, "cell": list(cell),
                             "point": list(point), "direction": direction}, **base)

    listed = "; ".join(f"{d.name} {score_text(d.score)}" for d in dets[:8]) + ("; …" if len(dets) > 8 else "")
    found = (f"{len(dets)} object(s) with a class probability above {threshold:.3g}, best first: {listed}."
             if dets else f"No object scores above {threshold:.3g}.")
    det_meta = {"method": "detections", "threshold": threshold,
                "detections": [{"query": d.query, "label": d.label, "name": d.name, "score": d.score,
                                "box": list(d.box)} for d in dets]}
    if query is not None:
        det = cross(head, f"Detections · cross-attention of {obj} · layer {dl} · {head_text(head)}",
                    detection_shapes(dets, query))
        det.description = f"{found} Under the boxes: {det.description[0].lower()}{det.description[1:]}"
        det.meta = {**det_meta, **det.meta, "method": "detections + decoder cross-attention"}
    else:
        det = MapView(f"Detections · above {threshold:.3g}", found, shapes=marks + detection_shapes(dets, None),
                      meta=det_meta, **base)
    views = {"detections": det}

    if s["focus"] == "query":
        def attention(hd, title):
            return cross(hd, title, detection_shapes(dets, query, only_selected=True))
        main = f"Cross-attention · {obj} · layer {dl} · {head_text(head)}"
    else:
        attention = encoder
        main = f"Encoder self-attention {arrow} cell {cell} · layer {el} · {head_text(head)}"
    views["attention"] = attention(head, main)
    views["encoder"] = encoder(head, f"Encoder self-attention {arrow} cell {cell} · layer {el} · {head_text(head)}")

    vrows, vcols = a.valid_shape  # tiles hold the cells with image in them: padding is bottom/right
    x0, y0, _, _ = a.grid.rect(0, 0)
    _, _, x1, y1 = a.grid.rect(vrows - 1, vcols - 1)
    sel_head = head if isinstance(head, int) else None
    if s["focus"] == "query":
        views["grid"] = TileGrid(
            f"Cross-attention · {obj} · every decoder layer × head",
            f"Decoder cross-attention of {obj_long} for every decoder layer and head",
            a.head_maps(query)[..., :vrows, :vcols], "decoder layer", "head", selected=(dl, sel_head),
            tile_aspect=(x1 - x0) / (y1 - y0), value_label="cross-attention",
            meta={"method": "decoder cross-attention per head", "query": query})
    else:
        views["grid"] = TileGrid(
            f"Encoder self-attention {arrow} cell {cell} · every encoder layer × head",
            f"Encoder self-attention {arrow} feature cell ({cell[0]}, {cell[1]}) ({how}) for every encoder "
            "layer and head",
            a.encoder_head_maps(direction=direction, cell=cell)[..., :vrows, :vcols], "encoder layer", "head",
            selected=(el, sel_head), tile_aspect=(x1 - x0) / (y1 - y0), value_label="encoder attention",
            meta={"method": "encoder self-attention per head", "cell": list(cell), "direction": direction})
    where = f"layer {dl}" if s["focus"] == "query" else f"encoder layer {el}"
    for hd in range(H):
        views[f"head:{hd}"] = attention(hd, f"{where.capitalize()} · head {hd}")
    focus = {panel.enc_view: "encoder", panel.grid_view: "grid", panel.det_view: "detections"}
    current = next((name for wdg, name in focus.items() if wdg.hasFocus()), "detections")
    return ExportSources(views, s, colormap=s["colormap"], current=current)
