"""View state as data: what a family's views show, as a frozen, validated, JSON-able dataclass.

The GUI controls edit it (dataclasses.replace), the views and the exporters draw from it, and an
export's sidecar records it (`settings`), so re-running the sidecar rebuilds the same figure.

    state = ViTState.from_json(settings)     # defaults for what is missing; old keys converted
    state = state.resolved(analysis)         # checked against the analysis; ExportError says why
    state = state.carried_over(analysis)     # what survives a new image or model
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .analysis.heads import FUSIONS
from .colormaps import COLORMAPS, DEFAULT_COLORMAP, OVERLAYS
from .figures import ExportError, parse_head


@dataclass(frozen=True)
class ViewState:
    """What every family shares: the display settings and the model-view switch."""

    colormap: str = DEFAULT_COLORMAP
    opacity: float = 0.6
    grid: bool = True
    model_view: bool = False
    overlay: str = "blend"  # how maps lie over the photo (vitviz.core.colormaps.OVERLAYS)
    family = ""  # set by each subclass (a class attribute, not a field)

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Plain JSON types, with the family's name (sidecars, settings)."""
        out = {"family": self.family}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = dict((k, _plain(x)) for k, x in v) if f.name.endswith("params") else _plain(v)
        return out

    @classmethod
    def from_json(cls, data: dict | None):
        """A state from a settings dict (sidecar, CLI, saved settings). Unknown keys are ignored
        (another family's, or a newer version's); old names are converted by `upgrade`."""
        data = cls.upgrade(dict(data or {}))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _frozen(v) for k, v in data.items() if k in names})

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Settings written by an earlier vitviz -> today's names. Subclasses extend it."""
        return data

    def updated(self, overrides: dict | None):
        """This state with `overrides` (a settings dict, e.g. the CLI's) applied."""
        if not overrides:
            return self
        merged = {**self.to_json(), **self.upgrade(dict(overrides))}
        return type(self).from_json(merged)

    def replace(self, **changes):
        return dataclasses.replace(self, **{k: _frozen(v) for k, v in changes.items()})

    # -- checks --------------------------------------------------------------------------------
    def resolved(self, analysis):
        """Checked against `analysis` with negative indices made absolute; ExportError if a value
        does not fit. Subclasses check their own fields and call this for the display ones."""
        if self.colormap not in COLORMAPS:
            raise ExportError(f"unknown colormap {self.colormap!r}; choose one of {', '.join(COLORMAPS)}")
        try:
            opacity = float(self.opacity)
        except (TypeError, ValueError):
            raise ExportError(f"opacity must be a number in [0, 1], not {self.opacity!r}") from None
        if not 0.0 <= opacity <= 1.0:
            raise ExportError(f"opacity must be between 0 and 1, not {opacity}")
        if self.overlay not in OVERLAYS:
            raise ExportError(f"unknown overlay {self.overlay!r}; choose one of {', '.join(OVERLAYS)}")
        return self.replace(opacity=opacity, grid=bool(self.grid), model_view=bool(self.model_view))

    def carried_over(self, analysis):
        """What survives a new image or model: every setting that still fits; the rest back to its
        default (a layer past the new model's last becomes the last, a patch outside the new grid
        becomes the class token...)."""
        return self


class MethodChoice:
    """For a state with `method` and `method_params` fields: the chosen method's declaration and
    its parameters as a dict."""

    @property
    def params(self) -> dict:
        return dict(self.method_params)

    def method_decl(self):
        from .methods import get_method

        try:
            return get_method(self.method)
        except KeyError as exc:
            raise ExportError(exc.args[0]) from None


def check_layer(layer, n: int, what: str = "layer", unit: str = "layers") -> int:
    try:
        i = int(layer)
    except (TypeError, ValueError):
        raise ExportError(f"{what} must be a number, not {layer!r}") from None
    if not -n <= i < n:
        raise ExportError(f"{what} {layer} is out of range (the model has {n} {unit}: 0..{n - 1})")
    return i + n if i < 0 else i


def check_direction(direction) -> str:
    if direction not in ("from", "to"):
        raise ExportError(f"direction must be 'from' or 'to', not {direction!r}")
    return direction


def check_fusion(fusion, what: str = "head fusion") -> str:
    if fusion not in FUSIONS:
        raise ExportError(f"{what} must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    return fusion


def head_or_fusion(value, heads: int, where: str = "the model"):
    return parse_head(value, heads, where)


def _frozen(v):
    """Lists (JSON) -> tuples, dicts -> sorted item tuples: states are hashable and comparable."""
    if isinstance(v, dict):
        return tuple(sorted((str(k), _frozen(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    return v


def _plain(v):
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                                          for x in v):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v
