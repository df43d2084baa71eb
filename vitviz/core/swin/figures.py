"""The Swin figure: the window attention with the partition, mask regions and the token's window
drawn as vector marks; the windows alone; the attention summary; the blocks x heads grid; the
relative position bias; each head of the block.

Views: "attention", "windows", "summary", "grid", "bias", "method" (the state's method: what the
panel shows in its method view, relevance for the top-1 class by default), "head:H". Built from
(analysis, SwinState) alone: the GUI panel and the headless `vitviz export` draw the same description.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..figures import ExportError, ExportSources, MapView, Shape, TileGrid, crop_shade, grid_lines, selection_rect
from ..methods.targets import target_meta, target_text
from ..vit.figures import head_text
from .marks import REGION_COLORS, WINDOW_COLOR, crop_to_window, rgba, token_rect, window_marks
from .state import DEFAULT_METHOD, SwinState


def attention_title(s: SwinState) -> str:
    """The main view's title for a resolved state (token set)."""
    return (f"Attention {s.direction} token {tuple(s.token)} · stage {s.stage} block {s.block} · "
            f"{head_text(s.head)}")


def summary_head(a, head):
    """The head the summary (last stage) shows: the selected one if that stage has it, else the mean."""
    return head if not isinstance(head, int) or head < a.blocks[-1].heads else "mean"


def summary_title(a, head) -> str:
    return (f"Where the model looks · attention received in stage {a.num_stages - 1} · "
            f"{head_text(summary_head(a, head))}")


# -- the method view ------------------------------------------------------------------------------
def takes_token(method) -> bool:
    """Whether `method` works on one block and token (raw window attention); the others (relevance,
    Grad-CAM, ...) explain the pooled prediction, whatever token and block the view selects."""
    return "stage" in method.context or "block" in method.context


def method_kwargs(s: SwinState, method=None, params: dict | None = None) -> dict:
    """What `method` (default: the state's) is called with, for a resolved state: the view's stage,
    block, head, token and direction where the method takes them, then its parameters."""
    method = method or s.method_decl()
    params = method.resolve(s.params if params is None else params)
    context = {}
    if takes_token(method):
        context = {k: v for k, v in (("stage", s.stage), ("block", s.block), ("head", s.head),
                                     ("query", tuple(s.token)), ("direction", s.direction))
                   if k in method.context}
    return {**context, **params}


def method_title(method, params: dict, s: SwinState) -> str:
    """'Relevance · start layer 2' (the target is named by target_text, appended by the caller)."""
    if takes_token(method):
        return (f"{method.title} {s.direction} token {tuple(s.token)} · stage {s.stage} block {s.block} · "
                f"{head_text(s.head)}")
    shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items()
                      if not (method.needs_grad and k in ("target", "contrast")))
    return method.title + (f" · {shown}" if shown else "")


def method_grid(a, values: np.ndarray, stage: int):
    """The token grid a method's map lies on: the view's stage if its shape fits, else the first
    stage whose grid does (class-specific Swin maps are on the stage-0 grid)."""
    shape = tuple(np.shape(values))
    for i in [stage] + [i for i in range(a.num_stages) if i != stage]:
        if a.stage_grid(i).shape == shape:
            return a.stage_grid(i)
    raise ExportError(f"the method's map ({shape[0]}x{shape[1]}) fits no stage's token grid")


def window_shapes(a, s: SwinState) -> list[Shape]:
    """The partition lines, mask regions and the token's window pieces as figure shapes."""
    xs, ys = a.stage_grid(s.stage).edges()
    parts, regions = window_marks(a, s.stage, s.block, s.partition, s.regions)
    shapes = []
    for lab, rect in regions:
        color = REGION_COLORS[lab % len(REGION_COLORS)]
        shapes.append(Shape("rect", rect, rgba(color), 1.0, label=str(lab),
                            fill=rgba(color, 45) if lab else None, dashed=True))
    shapes += [Shape("lines", segs, rgba(color), 2.5) for segs, color in parts]
    for piece in a.window_rects(s.stage, s.block, *s.token):
        shapes.append(Shape("rect", token_rect(piece, xs, ys), rgba(WINDOW_COLOR), 3.0))
    return shapes


def build(a, state: SwinState, view_rect=None) -> ExportSources:
    if a is None:
        raise ExportError("Nothing to export: no image has been analysed yet")
    s = state.resolved(a)
    stage, block, head, direction, token = s.stage, s.block, s.head, s.direction, s.token
    b = a.block(stage, block)
    grid = a.stage_grid(stage)
    kind = "shifted" if b.shifted else "regular"
    where = (f"stage {stage} (the paper's stage {stage + 1}) block {block}, "
             f"{kind} {b.window[0]}×{b.window[1]} windows")
    how = "where it looks" if direction == "from" else "how much each token of its window attends to it"
    shade = crop_shade(a.grid.transform.visible_rect())
    base = dict(image=np.asarray(a.image), opacity=s.opacity, overlay=s.overlay, view_rect=view_rect)
    if s.model_view:
        base.update(image=a.input_image(), image_rect=a.grid.extent())
    marks = [shade] + ([grid_lines(*grid.edges())] if s.grid else [])
    marks += window_shapes(a, s) + [selection_rect(grid.rect(*token))]
    common = {"stage": stage, "block": block, "token": list(token), "direction": direction}

    def attention(h, title):
        return MapView(title, f"Window attention {direction} token ({token[0]}, {token[1]}) ({how}), {where}, "
                              f"{f'head {h}' if isinstance(h, int) else f'{h} over {b.heads} heads'}; "
                              "blank outside the token's window.",
                       values=a.attention_map(stage, block, h, token, direction), extent=grid.extent(),
                       shapes=marks, meta={"method": "window attention", "head": h, **common}, **base)

    views = {"attention": attention(head, attention_title(s))}
    views["windows"] = MapView(f"Windows · stage {stage} block {block} ({kind})",
                               f"Window partition of {where}, the mask regions and the window of token "
                               f"({token[0]}, {token[1]}).", shapes=marks,
                               meta={"method": "windows", "partition": s.partition, **common}, **base)
    last = a.num_stages - 1
    sum_head = summary_head(a, head)
    views["summary"] = MapView(
        f"Where the model looks · stage {last}", f"Attention each token of stage {last} receives, averaged "
        f"over its blocks and all queries ({head_text(sum_head)}).",
        values=a.attention_summary(-1, sum_head), extent=a.stage_grid(last).extent(),
        value_label="attention received",
        shapes=[shade] + ([grid_lines(*a.stage_grid(last).edges())] if s.grid else []),
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
    method = s.method_decl()
    try:
        views["method"] = method_view(a, s, method, shade, base)
    except (ValueError, RuntimeError) as exc:
        # the default (relevance) cannot be computed for every Swin (no classifier head): the other
        # views still export; a method asked for by name says why it failed
        if s.method != DEFAULT_METHOD or s.params != method.resolve({}):
            raise ExportError(f"{method.name}: {exc}") from None
    for h in range(b.heads):
        views[f"head:{h}"] = attention(h, f"Stage {stage} block {block} · head {h}")
    return ExportSources(views, s.to_json(), colormap=s.colormap, current="summary" if s.summary else "attention")


SWIN_NOTES = {  # where a method's own description speaks of a class token Swin does not have
    "relevance": "Chefer et al. 2021 for Swin: per block R += mean_h max(dA * A, 0) R with each window's "
                 "attention and gradient placed at its tokens' true positions (through the cyclic shift); "
                 "patch merging carries R to the merged tokens (a merged row = the mean of its four "
                 "sources'); the map is the mean of the last stage's rows (the pooled prediction), on the "
                 "stage-0 grid.",
}


@dataclass
class LazyMapView(MapView):
    """A MapView whose values are computed when first read: building the figure (every export, the
    export dialog) does not run a gradient method's backward pass unless its view is drawn."""

    compute: object = field(default=None, repr=False, compare=False)  # () -> values

    @property
    def values(self):
        if self.__dict__.get("_values") is None and self.compute is not None:
            self._values, self.compute = self.compute(), None
        return self.__dict__.get("_values")

    @values.setter
    def values(self, v) -> None:
        self._values = v


def method_view(a, s: SwinState, method, shade, base: dict) -> MapView:
    """The state's method map as a view, its target named in the title, caption and sidecar (the
    target is checked here; the map itself is computed when the view is drawn)."""
    params = method.resolve(s.params)
    target = target_text(a, method, params)  # ' · target: tabby (281), logit 9.12'; '' if not class-specific
    # raw attention lies on the view's stage; the class-specific maps on the stage-0 grid
    grid = a.stage_grid(s.stage if takes_token(method) else 0)

    def compute():
        try:
            values = method(a, **method_kwargs(s, method, params))
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"{method.name}: {exc}") from None
        if np.shape(values) != grid.shape:
            raise ExportError(f"{method.name}: its map ({'x'.join(map(str, np.shape(values)))}) is not on the "
                              f"{grid.rows}x{grid.cols} token grid it should be drawn on")
        return values

    where = (f"for token ({s.token[0]}, {s.token[1]}) of stage {s.stage} block {s.block}" if takes_token(method)
             else f"on the stage-0 grid ({grid.rows}×{grid.cols} tokens)")
    desc = f"{method.describe(params)} {where}. {SWIN_NOTES.get(method.name, method.description)}"
    desc += f" Explained: the {target[3:]}." if target else ""
    marks = [shade] + ([grid_lines(*grid.edges())] if s.grid else [])
    return LazyMapView(method_title(method, params, s) + target, desc, compute=compute, extent=grid.extent(),
                       value_label=method.value_label, shapes=marks,
                       meta={"method": method.name, **params, **target_meta(a, method, params)}, **base)
