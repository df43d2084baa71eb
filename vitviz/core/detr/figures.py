"""The DETR figure, built from (analysis, DetrState) alone: the GUI panel and the headless `vitviz
export` draw the same description.

Views:
  "detections"  the image, every detection above the threshold as a vector box in its list colour
                with a "class score" label, over the selected object's decoder cross-attention;
  "attention"   what the panel's main view shows: the selected object's cross-attention (its box
                alone marked), or, when the point has the focus or no object is selected, the
                encoder self-attention at the point;
  "encoder"     the encoder self-attention at the point, its feature cell outlined, the point marked;
  "grid"        layers x heads for the selected object (decoder) or the point (encoder);
  "head:H"      the "attention" view for head H of the layer.
Feature cells made only of padding carry NaN: never drawn, in any view.
"""
from __future__ import annotations

import numpy as np

from ..figures import ExportError, ExportSources, MapView, TileGrid, crop_shade, grid_lines
from ..vit.figures import head_text
from .marks import detection_shapes, point_marker, score_text
from .state import DetrState


def object_name(a, query: int) -> str:
    """The class an object query predicts (its best class, "no object" left out)."""
    return a.class_name(int(np.argmax(a.probabilities()[query, :-1])))


def cross_title(a, s: DetrState) -> str:
    """The detections view's title on screen for a resolved state with an object selected."""
    if s.object_map == "relevance":
        return f"Relevance · why {object_name(a, s.query)} (query {s.query}) · every layer"
    return (f"Decoder cross-attention · {object_name(a, s.query)} (query {s.query}) · "
            f"layer {s.decoder_layer(a)} · {head_text(s.head)}")


def object_map(a, s: DetrState, head=None):
    """The selected object's map as the state asks: cross-attention (layer, `head`) or relevance."""
    if s.object_map == "relevance":
        return a.explain("relevance", target=s.query)
    return a.cross_attention(s.decoder_layer(a), s.head if head is None else head, s.query)


def encoder_title(a, s: DetrState) -> str:
    arrow = "from" if s.direction == "from" else "to"
    return f"Encoder self-attention {arrow} cell {tuple(s.cell)} · layer {s.encoder_layer(a)} · {head_text(s.head)}"


def settings_of(a, s: DetrState) -> dict:
    """A resolved state as sidecars record it: what was shown (the focus the views used) and, for
    the reader, the derived detections / decoder_layer / encoder_layer of vitviz 0.1's sidecars."""
    out = s.replace(focus=s.shown_focus()).to_json()
    out.update(detections=[d.query for d in a.detections(s.threshold)], decoder_layer=s.decoder_layer(a),
               encoder_layer=s.encoder_layer(a))
    return out


def build(a, state: DetrState, view_rect=None) -> ExportSources:
    if a is None:
        raise ExportError("Nothing to export: no image has been analysed yet")
    s = state.resolved(a)
    threshold, head, direction, query = s.threshold, s.head, s.direction, s.query
    dl, el = s.decoder_layer(a), s.encoder_layer(a)
    dets = a.detections(threshold)
    cell, point = tuple(s.cell), tuple(s.point)
    focus = s.shown_focus()
    H = a.num_heads

    marks = []
    w, h = a.image.size
    visible = a.grid.transform.visible_rect()
    if visible != (0.0, 0.0, float(w), float(h)):
        marks.append(crop_shade(visible))
    if s.grid:
        marks.append(grid_lines(*a.grid.edges()))
    base = dict(image=np.asarray(a.image), extent=a.grid.extent(), opacity=s.opacity, overlay=s.overlay,
                view_rect=view_rect)
    blank = " Feature cells made only of padding are blank." if a.pad_mask.any() else ""
    heads_long = {h_: f"head {h_}" if isinstance(h_, int) else f"{h_} over {H} heads" for h_ in [head, *range(H)]}

    obj = obj_long = ""
    if query is not None:
        d = dets[s.detection] if s.detection is not None else None
        name = d.name if d is not None else object_name(a, query)
        obj = f"{name} (query {query})"
        obj_long = (f"the {name} detected with probability {score_text(d.score)} (query {query}, thick box)"
                    if d is not None else f"query {query} ({name}, below the threshold)")

    def cross(hd, title, shapes):
        if s.object_map == "relevance":
            return MapView(title.replace(f"cross-attention of {obj} · layer {dl} · {head_text(head)}",
                                         f"relevance of {obj}"),
                           f"Relevance of {obj_long} (Chefer et al. 2021, encoder-decoder rules, every "
                           f"layer): what the model used for this box and class.{blank}",
                           values=object_map(a, s), shapes=marks + shapes, value_label="relevance",
                           meta={"method": "relevance", "target": query}, **base)
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

    enc_title = encoder_title(a, s)
    if focus == "query":
        def attention(hd, title):
            return cross(hd, title, detection_shapes(dets, query, only_selected=True))
        main = f"Cross-attention · {obj} · layer {dl} · {head_text(head)}"
    else:
        attention, main = encoder, enc_title
    views["attention"] = attention(head, main)
    views["encoder"] = encoder(head, enc_title)

    vrows, vcols = a.valid_shape  # tiles hold the cells with image in them: padding is bottom/right
    x0, y0, _, _ = a.grid.rect(0, 0)
    _, _, x1, y1 = a.grid.rect(vrows - 1, vcols - 1)
    sel_head = head if isinstance(head, int) else None
    if focus == "query":
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
    where = f"layer {dl}" if focus == "query" else f"encoder layer {el}"
    for hd in range(H):
        views[f"head:{hd}"] = attention(hd, f"{where.capitalize()} · head {hd}")
    return ExportSources(views, settings_of(a, s), colormap=s.colormap, current="detections")
