"""What the Swin views show: stage, block, head, the selected point, direction, the window overlays.

The selection is a point of the original image (pixels), not a token: it survives stage changes,
selecting at each stage the token holding it (the one patch merging carried it into). `token` is
derived from it when the state is resolved, for sidecars and captions.

Two keys are inputs only, for the CLI's ViT-style settings, and are folded in by resolved():
"layer" counts blocks over all stages (negative from the end) and replaces stage / block;
"query" ROW,COL is a token of that block's stage and replaces the point ("cls": keep the point).

`method` is the map of the method view beside the window attention (vitviz.core.methods). Its default
is relevance for the top-1 class: the only class-agnostic method Swin has is raw window attention,
which the main view already shows.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..figures import ExportError, parse_head
from ..state import MethodChoice, ViewState, check_direction, check_layer
from .marks import PARTITIONS

PARTITION_KEYS = tuple(k for k, _ in PARTITIONS)
DEFAULT_METHOD = "relevance"


@dataclass(frozen=True)
class SwinState(MethodChoice, ViewState):
    stage: int = 1  # stage 1, a shifted block: windows large enough to see, the shift and mask at work
    block: int = 1
    head: object = "mean"  # a head index, or "mean" | "max" | "min"
    direction: str = "from"  # "from": where the token looks (its row); "to": who looks at it
    point: tuple | None = None  # (x, y) original pixels; None: the middle of what the model saw
    partition: str = "block"  # the block's own windows, the stage's regular / shifted, both, none
    regions: bool = True  # the shifted-window mask's regions
    summary: bool = False  # the main view shows the attention summary instead
    layer: int | None = None  # input only: a block over all stages (replaces stage / block)
    query: object = "cls"  # input only: (row, col) of the stage grid (replaces point); "cls": the point
    token: tuple | None = None  # derived: the stage's token holding `point`
    method: str = DEFAULT_METHOD  # the method view's map (vitviz.core.methods)
    method_params: tuple = ()  # (name, value) pairs of that method's parameters
    family = "swin"

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Old sidecars wrote the panel's view_settings() plus the CLI's keys: a "layer" beside
        "stage" / "block" was already folded into them (the old export let stage / block win), and
        the CLI's "method": "rollout" (with its parameters), which Swin never drew. A sidecar is
        told from the CLI's own settings by the derived "token" it records: there the method goes
        back to the default; an explicit `--method rollout` stays and resolved() says it does not
        apply to Swin."""
        if "layer" in data and ("stage" in data or "block" in data):
            data.pop("layer")
        if data.get("method") == "rollout" and data.get("token") is not None:
            data.pop("method")
            data.pop("method_params", None)
        q = data.get("query")
        if q is None:
            data.pop("query", None)
        elif isinstance(q, str):
            t = q.strip().lower()
            if t == "cls":
                data["query"] = "cls"
            else:
                try:
                    data["query"] = tuple(int(v) for v in t.split(","))
                except ValueError:
                    raise ExportError(f"query must be 'cls' or [row, col], not {q!r}") from None
        return data

    def updated(self, overrides: dict | None) -> "SwinState":
        """As ViewState.updated; a "layer" override replaces this state's stage and block."""
        if not overrides:
            return self
        over = self.upgrade(dict(overrides))
        base = self.to_json()
        if over.get("layer") is not None:
            base.pop("stage")
            base.pop("block")
        return type(self).from_json({**base, **over})

    def _method_params(self) -> dict:
        method = self.method_decl()
        if "swin" not in method.families:
            raise ExportError(f"method {method.name!r} is not available for Swin models (they take: "
                              f"{', '.join(m.name for m in _swin_methods())})")
        try:
            return method.resolve(self.params)
        except ValueError as exc:
            raise ExportError(f"{method.name}: {exc}") from None

    # -- checks --------------------------------------------------------------------------------
    def _stage_block(self, a) -> tuple[int, int]:
        if self.layer is not None:
            n = len(a.blocks)
            try:
                i = int(self.layer)
            except (TypeError, ValueError):
                raise ExportError(f"layer must be a number, not {self.layer!r}") from None
            if not -n <= i < n:
                raise ExportError(f"layer {self.layer} is out of range (the model has {n} blocks over "
                                  f"{a.num_stages} stages: 0..{n - 1})")
            return a.blocks[i].stage, a.blocks[i].block
        stage = check_layer(self.stage, a.num_stages, "stage", "stages")
        nb = a.num_blocks(stage)
        try:
            block = int(self.block)
        except (TypeError, ValueError):
            raise ExportError(f"block must be a number, not {self.block!r}") from None
        if not -nb <= block < nb:
            raise ExportError(f"block {self.block} is out of range (stage {stage} has {nb} blocks)")
        return stage, block % nb

    def _point(self, a, stage: int) -> tuple[float, float]:
        grid = a.stage_grid(stage)
        q = self.query
        if not (q is None or (isinstance(q, str) and q.lower() == "cls")):
            try:
                r, c = (int(v) for v in q)
            except (TypeError, ValueError):
                raise ExportError(f"query must be 'cls' or [row, col], not {q!r}") from None
            if not (0 <= r < grid.rows and 0 <= c < grid.cols):
                raise ExportError(f"query: token ({r}, {c}) outside the {grid.rows}x{grid.cols} grid of "
                                  f"stage {stage}")
            return token_centre(a, stage, r, c)
        if self.point is None:
            return default_point(a)
        try:
            x, y = (float(v) for v in self.point)
        except (TypeError, ValueError):
            raise ExportError(f"point must be [x, y] in image pixels, not {self.point!r}") from None
        return x, y

    def resolved(self, analysis) -> "SwinState":
        a = analysis
        base = super().resolved(a)
        stage, block = self._stage_block(a)
        head = parse_head(self.head, a.block(stage, block).heads, f"stage {stage}")
        point = tuple(float(v) for v in self._point(a, stage))
        token = a.stage_grid(stage).token_at(*point)
        if token is None:
            raise ExportError("no token selected: the point is outside what the model saw")
        if self.partition not in PARTITION_KEYS:
            raise ExportError(f"partition must be one of {', '.join(PARTITION_KEYS)}, not {self.partition!r}")
        return base.replace(stage=stage, block=block, head=head, point=point, token=tuple(token),
                            direction=check_direction(self.direction), regions=bool(self.regions),
                            summary=bool(self.summary), layer=None, query="cls",
                            method_params=self._method_params())

    def carried_over(self, analysis) -> "SwinState":
        """A new image or model keeps stage, block and head where they still exist (else the last
        stage / block, fused heads) and the point where the model still sees it (else the middle)."""
        a = analysis
        ns = a.num_stages
        stage = self.stage % ns if -ns <= self.stage < ns else ns - 1
        nb = a.num_blocks(stage)
        block = self.block % nb if -nb <= self.block < nb else nb - 1
        heads = a.block(stage, 0).heads
        head = self.head if not isinstance(self.head, int) or 0 <= self.head < heads else "mean"
        point = self.point
        if point is not None and a.grid.token_at(*point) is None:
            point = None
        params = dict(self.method_params)
        n = 0 if getattr(a, "logits", None) is None else len(a.logits)
        for k in ("target", "contrast"):  # a class the new model does not have: back to the default
            if k in params and isinstance(params[k], int) and not -1 <= params[k] < n:
                params[k] = -1
        return self.replace(stage=stage, block=block, head=head, point=point, layer=None, query="cls",
                            method_params=params)


def _swin_methods():
    from ..methods import methods

    return methods("swin")


def token_centre(a, stage: int, row: int, col: int) -> tuple[float, float]:
    """The centre of the visible part of token (row, col) of `stage` (original pixels): a point
    inside it even where the crop cuts the token."""
    x0, y0, x1, y1 = a.stage_grid(stage).rect(row, col)
    vx0, vy0, vx1, vy1 = a.grid.transform.visible_rect()
    return (max(x0, vx0) + min(x1, vx1)) / 2, (max(y0, vy0) + min(y1, vy1)) / 2


def default_point(a) -> tuple[float, float]:
    """The centre of the stage-0 patch in the middle of what the model saw (inside a patch, not on
    its corner)."""
    vx0, vy0, vx1, vy1 = a.grid.transform.visible_rect()
    x0, y0, x1, y1 = a.grid.rect(*a.grid.token_at((vx0 + vx1) / 2, (vy0 + vy1) / 2))
    return (x0 + x1) / 2, (y0 + y1) / 2
