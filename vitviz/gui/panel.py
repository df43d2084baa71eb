"""The base of every family's panel: the view state, the controls all families share, export.

A panel holds the analysis on screen and its view state (a frozen dataclass from the family table,
vitviz.core.families). Controls never hold state of their own: a handler makes a new state with
update_state(...); set_state() shows the state in the controls (signals blocked) and calls
on_state_change(old, new), where the subclass redraws what changed. Export builds the family's
figure from (analysis, state) in core, exactly what a headless `vitviz export` does.

Shared here: head selector and [ / ] stepping, direction and D, the class-token toggle C (for
families with one), "what the model sees" M (or a status-bar note where the family has none), the
method selector with generated parameter controls, the top-5 list, and export.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..core.families import get_family
from .method_form import MethodForm
from .views.controls import DisplayControls
from .views.panel_common import fill_head_combo, fill_predictions, model_view_check, predictions_list, side_width

SQUEEZED = 8.0  # an input this far out of shape draws the photo as a line: show the model's view


class Panel(QtWidgets.QWidget):
    family = ""  # the family table's name; set by each subclass
    statusMessage = QtCore.Signal(str)
    stateChanged = QtCore.Signal(object)  # the new state, after the views were redrawn
    grad_runner = None  # the AnalysisRunner for gradient maps; None: the window's (self.window().runner)

    def __init__(self, display: DisplayControls, parent=None):
        super().__init__(parent)
        self.display = display
        self.analysis = None
        self.info = get_family(self.family)
        self.state = self.info.state_type()(**display.settings())

        self.head_combo = QtWidgets.QComboBox()
        self.head_combo.setToolTip("Head, or all heads fused ([ and ])")
        self.direction_combo = QtWidgets.QComboBox()
        self.direction_combo.addItem("from query (where it looks)", "from")
        self.direction_combo.addItem("to query (who looks at it)", "to")
        self.direction_combo.setToolTip("Row or column of the attention matrix (D)")
        self.model_view_check = model_view_check()
        if not self.info.model_view:  # (setVisible(True) on a widget with no parent yet opens a window)
            self.model_view_check.hide()
        self.predictions = predictions_list()
        self.method_combo = QtWidgets.QComboBox()
        self.method_combo.setToolTip("The map shown beside the raw attention")
        self.method_form = MethodForm()
        self._fill_methods()

        self.head_combo.currentIndexChanged.connect(self._on_head_change)
        self.direction_combo.currentIndexChanged.connect(self._on_direction_change)
        self.model_view_check.toggled.connect(self._on_model_view_change)
        self.method_combo.currentIndexChanged.connect(self._on_method_change)
        self.method_form.changed.connect(self._on_method_params_change)
        self.predictions.itemClicked.connect(self._on_prediction_click)
        self._grad_maps = None
        self._method_map_for = None  # the analysis the method view's map belongs to
        self._pointer = None  # the last hovered or clicked point (original pixels), for the readout
        self._auto_model_view = False  # M was turned on for a tiny crop, not by the user
        self.side_split = None  # the splitter of the side column and the views (arrange_panel)
        self._side_set = None  # the side width we set last; another one is the user's drag
        display.changed.connect(self._on_display_change)

    # -- state ---------------------------------------------------------------------------------
    def set_state(self, state) -> None:
        """Show `state`: controls follow (no signals), then the views that depend on what changed."""
        old, self.state = self.state, state
        self.sync_controls()
        if self.analysis is not None and state != old:
            self.on_state_change(old, state)
            self.show_readout()  # a readout read before the change would describe the old state
            self.stateChanged.emit(state)

    def update_state(self, **changes) -> None:
        self.set_state(self.state.replace(**changes))

    def on_state_change(self, old, new) -> None:
        """Redraw after a state change (subclasses redraw only what `old` -> `new` touches)."""
        self.refresh()

    def sync_controls(self) -> None:
        """The shared controls show self.state. Subclasses extend it for their own controls."""
        s = self.state
        if hasattr(s, "head"):
            with QtCore.QSignalBlocker(self.head_combo):
                i = self.head_combo.findData(s.head)
                if i >= 0:
                    self.head_combo.setCurrentIndex(i)
        if hasattr(s, "direction"):
            with QtCore.QSignalBlocker(self.direction_combo):
                self.direction_combo.setCurrentIndex(self.direction_combo.findData(s.direction))
        with QtCore.QSignalBlocker(self.model_view_check):
            self.model_view_check.setChecked(bool(s.model_view))
        if hasattr(s, "method"):
            with QtCore.QSignalBlocker(self.method_combo):
                self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(s.method)))
            if self.method_form.method is None or self.method_form.method.name != s.method:
                self.method_form.set_method(self._method(s.method), dict(s.method_params))
            else:
                self.method_form.set_values(dict(s.method_params))

    def set_analysis(self, analysis) -> None:
        """Show a new result; settings that still fit it are kept (state.carried_over)."""
        self.analysis = analysis
        self._pointer = None  # a point on the previous image means nothing on this one
        self.fill_heads()
        if hasattr(analysis, "top_predictions"):
            fill_predictions(self.predictions, analysis)
        state = self.state.replace(**self.display.settings())
        self.state = state.carried_over(analysis).resolved(analysis)
        if hasattr(self.state, "method"):  # a CLIP model's targets are prompts: prompt boxes in the form
            from ..core.methods.targets import takes_text

            self.method_form.set_text_targets(takes_text(analysis), dict(self.state.method_params))
        crop = self._model_view_for_small_crops(analysis)
        self.sync_controls()
        self.on_new_analysis()
        self.refresh()
        if crop is not None:
            for view in self.image_views():
                view.show_rect(crop)  # the map covers the crop only: at full fit it is a line

    def _model_view_for_small_crops(self, analysis):
        """When the model saw a small part of the image, or the image squeezed far out of shape (a
        20000x50 strip), show its input ("M": in place and in its own proportions; turned back off
        for the next image that does not need it); returns the part to zoom to, or None."""
        t = analysis.grid.transform
        small = self.info.model_view and t.seen_fraction() < 0.05
        squeezed = self.info.model_view and t.stretch() > SQUEEZED
        if (small or squeezed) and not self.state.model_view:
            self.state = self.state.replace(model_view=True)
            self._auto_model_view = True
        elif not (small or squeezed) and self._auto_model_view:
            self.state = self.state.replace(model_view=False)
            self._auto_model_view = False
        if small:
            self.statusMessage.emit("Showing what the model sees (M): it saw a small part of this image. "
                                    "F shows the whole image.")
            return t.visible_rect()
        if squeezed and self.state.model_view:
            self.statusMessage.emit(f"Showing what the model sees (M): this image was squeezed "
                                    f"{t.stretch():.0f}× to fit its input, so the view is stretched back. "
                                    "M shows the photo's own shape.")
        return None

    def image_views(self) -> list:
        from .views.image_view import ImageView

        return self.findChildren(ImageView)

    def on_new_analysis(self) -> None:
        """Per-result set-up before the first refresh (ranges, base image...)."""

    def fill_heads(self) -> None:
        if not hasattr(self.state, "head"):
            return
        head = fill_head_combo(self.head_combo, self.num_heads(), self.state.head)
        if head != self.state.head:
            self.state = self.state.replace(head=head)

    def num_heads(self) -> int:
        return self.analysis.num_heads

    def refresh(self) -> None:
        raise NotImplementedError

    # -- commands (menu actions and keys) ------------------------------------------------------
    def step_layer(self, delta: int) -> None:
        raise NotImplementedError

    # -- the side column ----------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        split = self.side_split
        shown = split.sizes()[0] if split is not None else 0
        if split is None or shown == 0 or (self._side_set is not None and shown != self._side_set):
            return  # collapsed, or the user dragged it to the width they want
        self._set_side(side_width(self.width()))

    def _set_side(self, w: int) -> None:
        self.side_split.setSizes([w, max(1, self.width() - w)])
        self._side_set = self.side_split.sizes()[0]

    def toggle_side(self) -> None:
        """Collapse or restore the side column (Ctrl+B): more room for the views."""
        split = self.side_split
        if split.sizes()[0]:
            split.setSizes([0, self.width()])
        else:
            self._set_side(side_width(self.width()))

    def fit_views(self) -> None:
        """Fit every image and tile view of the panel to its content (F)."""
        from .views.head_grid import HeadGridView

        for view in self.image_views() + self.findChildren(HeadGridView):
            view.fit()

    def step_head(self, delta: int) -> None:
        i = (self.head_combo.currentIndex() + delta) % max(1, self.head_combo.count())
        self.head_combo.setCurrentIndex(i)

    def toggle_direction(self) -> None:
        self.direction_combo.setCurrentIndex(1 - self.direction_combo.currentIndex())

    def toggle_cls(self) -> None:
        self.statusMessage.emit(f"{self.info.title} models have no class token to query.")

    def toggle_model_view(self) -> None:
        if not self.info.model_view:
            self.statusMessage.emit(f"\"What the model sees\" (M) is not available for {self.info.title} models: "
                                    "their input is the photo itself, resized.")
            return
        self.model_view_check.toggle()

    # -- the readout: what is under the pointer, in the state on screen -------------------------
    def watch_pointer(self, *views) -> None:
        """Hover and clicks on `views` (ImageViews) drive the status-line readout."""
        for view in views:
            view.hovered.connect(self._on_pointer)
            view.clicked.connect(self._on_pointer)  # after the click's own handler: reads the new state

    def readout(self, x: float, y: float) -> str | None:
        """The status line for original pixel (x, y); None where there is nothing to say."""
        return None

    def show_readout(self) -> None:
        if self._pointer is not None and self.analysis is not None:
            text = self.readout(*self._pointer)
            if text:
                self.statusMessage.emit(text)

    def _on_pointer(self, x: float, y: float) -> None:
        self._pointer = (x, y)
        self.show_readout()

    # -- handlers ------------------------------------------------------------------------------
    def _on_head_change(self, index: int) -> None:
        data = self.head_combo.itemData(index)
        if data is not None:
            self.update_state(head=data)

    def _on_direction_change(self, index: int) -> None:
        self.update_state(direction=self.direction_combo.itemData(index))

    def _on_model_view_change(self, checked: bool) -> None:
        self._auto_model_view = False  # the user's choice from now on
        self.update_state(model_view=checked)

    def _on_display_change(self) -> None:
        self.update_state(**self.display.settings())

    def _on_method_change(self, index: int) -> None:
        name = self.method_combo.itemData(index)
        if name is None or name == self.state.method:
            return
        method = self._method(name)
        names = {p.name for p in method.params} & {"target", "contrast"}
        kept = {k: v for k, v in dict(self.state.method_params).items()  # a prompt (CLIP) stays the target
                if k in names and isinstance(v, str)}
        self.method_form.set_method(method, kept)
        self.update_state(method=name, method_params=method.resolve(kept))

    def _on_method_params_change(self, params: dict) -> None:
        try:
            params = self._method(self.state.method).resolve(params)
        except ValueError as exc:
            self.statusMessage.emit(str(exc))
            return
        self.update_state(method_params=params)

    def _on_prediction_click(self, item) -> None:
        """A class in the top-5 list becomes the target of the class-specific method (relevance if the
        method shown is class-agnostic)."""
        if self.analysis is None or not hasattr(self.state, "method"):
            return
        preds = self.analysis.top_predictions(self.predictions.count())
        row = self.predictions.row(item)
        if not 0 <= row < len(preds):
            return
        method = self._method(self.state.method)
        params = dict(self.state.method_params)
        if not method.needs_grad or "target" not in params:
            names = [m.name for m in self.info.methods() if m.needs_grad]
            if not names:
                return
            method = self._method("relevance" if "relevance" in names else names[0])
            params = method.resolve({})
            self.method_form.set_method(method, params)
        params["target"] = preds[row].index
        self.statusMessage.emit(f"{method.title} for {preds[row].label} (class {preds[row].index})")
        self.update_state(method=method.name, method_params=method.resolve(params))

    # -- methods -------------------------------------------------------------------------------
    def compute_method_map(self, method, kwargs: dict):
        """method(analysis, **kwargs); for a gradient method the worker computes it: None until it
        arrives (keep the previous map, say it is busy), then on_method_map_ready() runs."""
        if self._grad_maps is None:
            from .gradient_maps import GradientMaps

            self._grad_maps = GradientMaps(self)
        return self._grad_maps.get(method, kwargs)

    def draw_method_map(self, view, title: str, method, params: dict, draw) -> None:
        """The method's map into `view` through draw(values), titled with its target; while the worker
        computes it the previous map stays (unless it was another image's), and an error (a class
        the model does not have) keeps the last map and says why."""
        from ..core.methods.targets import target_text

        a = self.analysis
        try:
            values = self.current_method_map()
            if values is not None or not isinstance(params.get("target"), str):  # a prompt's score: the
                title += target_text(a, method, params)  # worker computed it with the map (no text tower here)
        except ValueError as exc:
            view.set_title(f"{title} · {exc}")
            self.statusMessage.emit(str(exc))
            return
        if values is None:
            if self._method_map_for is not a:
                view.set_map(None)
                view.set_title(f"{title} · computing…")
            else:
                view.set_title(f"{title} · computing… (the previous map meanwhile)")
            return
        draw(values)
        self._method_map_for = a
        view.set_title(title)

    @property
    def method_busy(self) -> bool:
        return self._grad_maps is not None and self._grad_maps.busy

    def on_method_map_ready(self) -> None:
        """A map computed in the worker arrived (subclasses redraw only the method's view)."""
        self.refresh()

    def _fill_methods(self) -> None:
        if not hasattr(self.state, "method"):
            self.method_combo.setVisible(False)
            self.method_form.setVisible(False)
            return
        with QtCore.QSignalBlocker(self.method_combo):
            self.method_combo.clear()
            for m in self.info.methods():
                self.method_combo.addItem(m.title, m.name)

    @staticmethod
    def _method(name: str):
        from ..core.methods import get_method

        return get_method(name)

    # -- export --------------------------------------------------------------------------------
    def view_settings(self) -> dict:
        """What is shown, for captions, sidecars and reproducing a figure: the state as JSON."""
        return self.state.replace(**self.display.settings()).to_json()

    def view_rect(self):
        """The region of the image the main view shows (for "as zoomed" exports), or None."""
        view = getattr(self, "main_view", None)
        if view is None:
            return None
        vr = view.vb.viewRect()
        return vr.left(), vr.top(), vr.right(), vr.bottom()

    def focused_view(self) -> str:
        return "attention"

    def export_sources(self, settings: dict | None = None):
        """The family's figure for the state on screen updated with `settings` (the CLI's keys)."""
        from ..core.figures import ExportError

        if self.analysis is None:
            raise ExportError("Nothing to export: no image has been analysed yet")
        state = self.state.replace(**self.display.settings()).updated(settings)
        sources = self.info.build_figures(self.analysis, state, view_rect=self.view_rect())
        sources.current = self.focused_view()
        return sources
