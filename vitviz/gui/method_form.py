"""A method's parameter controls, generated from its declaration (vitviz.core.methods.Param) by magicgui."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class MethodForm(QtWidgets.QWidget):
    """Controls for one method's parameters; `changed` carries the full params dict."""

    changed = QtCore.Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = QtWidgets.QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._container = None
        self.method = None

    def set_method(self, method, params: dict | None = None) -> None:
        """Rebuild the controls for `method` with `params` (defaults for what is missing)."""
        from magicgui.widgets import Container, create_widget

        if self._container is not None:
            self._layout.removeWidget(self._container.native)
            self._container.native.deleteLater()
            self._container = None
        self.method = method
        values = method.resolve(params or {})
        widgets = []
        for p in method.params:
            options = {}
            if p.choices is not None:
                options["choices"] = tuple(p.choices)
            if p.type in (int, float):
                step = p.step or (1 if p.type is int else 0.05)
                if p.min is not None:
                    options["min"] = p.min
                if p.max is not None:  # an open bound: the last step below it
                    options["max"] = p.max - (step if p.type is int else step / 5) if p.max_open else p.max
                options["step"] = step
            w = create_widget(value=values[p.name], annotation=p.type, name=p.name,
                              label=p.label or p.name.replace("_", " "), options=options)
            w.tooltip = p.help or None
            widgets.append(w)
        self._container = Container(widgets=widgets, labels=True)
        self._container.native.setContentsMargins(0, 0, 0, 0)
        self._container.changed.connect(self._on_change)
        self._layout.addWidget(self._container.native)
        if not widgets:
            self.hide()
        elif self.parent() is not None:
            self.show()

    def values(self) -> dict:
        if self._container is None:
            return {}
        return {w.name: w.value for w in self._container}

    def set_values(self, params: dict) -> None:
        """Show `params` without emitting `changed`."""
        if self._container is None:
            return
        with QtCore.QSignalBlocker(self):
            for w in self._container:
                if w.name in params and w.value != params[w.name]:
                    with w.changed.blocked():
                        w.value = params[w.name]

    def widget(self, name: str):
        """The magicgui widget of parameter `name` (tests, shortcuts)."""
        return self._container[name]

    def _on_change(self, *_):
        if not self.signalsBlocked():
            self.changed.emit(self.values())
