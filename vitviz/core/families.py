"""The one table of model families. analyze(), the CLI, the benchmark and the GUI read it, nothing else.

A family declares, in one place: how it runs (capture -> analysis), its view-state type (a frozen,
validated, JSON-able dataclass), how a figure is built from (analysis, state), whether it can show
the model's own input, and its GUI panel. Every reference is a lazy "module:attr" string, so this
table imports neither torch nor Qt. The methods a family supports are the registered methods that
declare it (vitviz.core.methods).

Adding a family: a folder of Qt-free modules (run, state, figures), a panel class, and one
register_family(...) call (see tests/test_families.py, which does it for a toy transformer).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from .named import NamedTable


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(import_module(module), attr)


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    run: str  # "module:fn": fn(loaded, image, attention_dtype) -> the family's analysis
    state: str  # "module:Class": the view state (vitviz.core.state.ViewState subclass)
    figures: str  # "module:fn": fn(analysis, state, view_rect=None) -> vitviz.core.figures.ExportSources
    panel: str  # "module:Class": the GUI panel (vitviz.gui.panel.Panel subclass); only the GUI resolves it
    model_view: bool = True  # can show "what the model sees" (M)
    views: tuple = ()  # the figure views it offers, for --view's help and the export dialog

    def runner(self):
        return _resolve(self.run)

    def state_type(self):
        return _resolve(self.state)

    def build_figures(self, analysis, state, view_rect=None):
        return _resolve(self.figures)(analysis, state, view_rect=view_rect)

    def panel_type(self):
        return _resolve(self.panel)

    def methods(self) -> list:
        from .methods import methods

        return methods(self.name)


_FAMILIES: NamedTable[Family] = NamedTable("model family")


def register_family(family: Family, *, replace: bool = False) -> Family:
    return _FAMILIES.register(family, replace=replace)


def unregister_family(name: str) -> None:
    _FAMILIES.unregister(name)


def get_family(name: str) -> Family:
    return _FAMILIES.get(name)


def families() -> list[Family]:
    return list(_FAMILIES)


register_family(Family(
    "vit", "Vision Transformer", run="vitviz.core.capture.vit:run",
    state="vitviz.core.vit.state:ViTState", figures="vitviz.core.vit.figures:build",
    panel="vitviz.gui.views.vit_panel:ViTPanel",
    views=("attention", "rollout", "method", "grid", "head:N")))
register_family(Family(
    "swin", "Swin Transformer", run="vitviz.core.capture.swin:run",
    state="vitviz.core.swin.state:SwinState", figures="vitviz.core.swin.figures:build",
    panel="vitviz.gui.views.swin_panel:SwinPanel",
    views=("attention", "windows", "summary", "grid", "bias", "head:N")))
register_family(Family(
    "detr", "DETR", run="vitviz.core.capture.detr_run:run",
    state="vitviz.core.detr.state:DetrState", figures="vitviz.core.detr.figures:build",
    panel="vitviz.gui.views.detr_panel:DetrPanel", model_view=False,
    views=("detections", "attention", "encoder", "grid", "head:N")))
