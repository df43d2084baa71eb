"""The ViT figure: raw attention, the selected method (rollout by default), every layer x head, each head.

Views: "attention", "method" (the state's method: what the panel shows beside the attention),
"rollout" and "method:NAME" (any registered ViT method, its parameters from the state when it is
the selected one, else its defaults), "grid" (layers x heads) and "head:H" (each head of the layer).
"""
from __future__ import annotations

import numpy as np

from ..figures import ExportError, ExportSources, MapView, TileGrid, crop_shade, grid_lines, selection_rect
from ..methods import methods
from ..methods.targets import target_meta, target_text
from .state import ViTState


def _query_text(query) -> tuple[str, str]:
    if query == "cls":
        return "CLS", "the CLS token"
    return f"patch {tuple(query)}", f"patch (row {query[0]}, col {query[1]})"


def head_text(head) -> str:
    return f"head {head}" if isinstance(head, int) else f"heads {head}"


def attention_title(s: ViTState) -> str:
    return f"Attention {s.direction} {_query_text(s.query)[0]} · layer {s.layer} · {head_text(s.head)}"


def method_title(method, params: dict, query) -> str:
    q = _query_text(query)[0]
    if method.name == "rollout":
        return f"Rollout for {q} · {params['head_fusion']} · discard {params['discard_ratio']:.2f}"
    shown = ", ".join(f"{k} {v}" for k, v in params.items()
                      if not (method.needs_grad and k in ("target", "contrast")))  # named by target_text
    return f"{method.title} for {q}" + (f" · {shown}" if shown else "")


def method_kwargs(s: ViTState, method=None, params: dict | None = None) -> dict:
    """What `method` (default: the state's) is called with: the state's context it takes, its parameters."""
    method = method or s.method_decl()
    params = method.resolve(s.params if params is None else params)
    context = {"layer": s.layer, "head": s.head, "query": s.query, "direction": s.direction}
    return {**{k: v for k, v in context.items() if k in method.context}, **params}


def method_map(a, s: ViTState, method=None, params: dict | None = None) -> np.ndarray:
    """The map of `method` (default: the state's) for the state's query and layer/head context."""
    method = method or s.method_decl()
    return method(a, **method_kwargs(s, method, params))


def build(a, state: ViTState, view_rect=None) -> ExportSources:
    if a is None:
        raise ExportError("Nothing to export: no image has been analysed yet")
    s = state.resolved(a)
    L, H = a.num_layers, a.num_heads
    layer, head, query, direction = s.layer, s.head, s.query, s.direction
    q, q_long = _query_text(query)
    how = "where it looks" if direction == "from" else "how much each patch attends to it"
    shapes = [crop_shade(a.grid.transform.visible_rect())]
    if s.grid:
        shapes.append(grid_lines(*a.grid.edges()))
    if query != "cls":
        shapes.append(selection_rect(a.grid.rect(*query)))
    base = dict(image=np.asarray(a.image), extent=a.grid.extent(), opacity=s.opacity, overlay=s.overlay, shapes=shapes,
                view_rect=view_rect)
    seen = ""
    if s.model_view:
        base.update(image=a.input_image(), image_rect=a.grid.extent())
        seen = " Drawn over the model's input (resized, cropped, de-normalised)."
    jq = query if query == "cls" else list(query)
    common = {"query": jq, "direction": direction}

    def attention(h, title):
        return MapView(title, f"Raw attention {direction} {q_long} ({how}), layer {layer}, "
                              f"{f'head {h}' if isinstance(h, int) else f'{h} over {H} heads'}.{seen}",
                       values=a.attention_map(layer, h, query, direction),
                       meta={"method": "attention", "layer": layer, "head": h, **common}, **base)

    def method_view(method, params):
        if method.name == "rollout":
            fusion, ratio = params["head_fusion"], params["discard_ratio"]
            desc = (f"Attention rollout through all {L} layers for {q_long} (heads fused by {fusion}, "
                    f"{ratio:.0%} weakest links dropped per layer, residual added).{seen}")
        else:
            desc = f"{method.describe(params)} for {q_long}. {method.description}{seen}"
        target = target_text(a, method, params)  # class-specific methods name what they explain
        desc += f" Explained: the {target[3:]}." if target else ""
        return MapView(method_title(method, params, query) + target, desc,
                       values=method_map(a, s, method, params), value_label=method.value_label,
                       meta={"method": method.name, **params, "query": jq, **target_meta(a, method, params)},
                       **base)

    views = {"attention": attention(head, attention_title(s))}
    selected = s.method_decl()
    views["method"] = method_view(selected, s.params)
    for m in methods("vit"):
        if m.name == "attention" or (m.needs_grad and m.name != selected.name):
            continue  # a gradient method costs a backward pass: its view only when it is selected
        view = views["method"] if m.name == selected.name else method_view(m, m.resolve({}))
        views[m.name if m.name == "rollout" else f"method:{m.name}"] = view
    x0, y0, x1, y1 = a.grid.extent()
    views["grid"] = TileGrid(
        f"Attention {direction} {q} · every layer × head",
        f"Raw attention {direction} {q_long} ({how}) for every layer and head",
        a.head_maps(query, direction), "layer", "head",
        selected=(layer, head if isinstance(head, int) else None), tile_aspect=(x1 - x0) / (y1 - y0),
        meta={"method": "attention per head", **common})
    for h in range(H):
        views[f"head:{h}"] = attention(h, f"Layer {layer} · head {h}")
    return ExportSources(views, s.to_json(), colormap=s.colormap, current="attention")
