"""A method's parameter controls, generated from its declaration (vitviz.core.methods.Param) by magicgui.

For a CLIP model (set_text_targets(True)) the class-or-text parameters (target, contrast) are prompt
boxes instead of class spin boxes; a prompt counts when it is committed (Enter or leaving the box), not
on every key, since each prompt is a backward pass in the worker. An empty box is -1: no prompt."""
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
        self.text_targets = False  # target / contrast as prompts (CLIP)
        self._text: dict[str, str] = {}  # prompt box -> its committed text
        self._shown: dict = {}  # the values last emitted or set

    def set_text_targets(self, on: bool, params: dict | None = None) -> None:
        """Prompt boxes (on) or class spin boxes for target / contrast; rebuilt with `params`."""
        if bool(on) != self.text_targets:
            self.text_targets = bool(on)
            if self.method is not None:
                self.set_method(self.method, params)

    def _is_text(self, p) -> bool:
        from ..core.methods.targets import ClassOrText

        return self.text_targets and isinstance(p, ClassOrText)

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
        self._text = {}
        for p in method.params:
            if self._is_text(p):
                widgets.append(self._prompt_box(p, values[p.name]))
                continue
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
        self._shown = self.values()
        if not widgets:
            self.hide()
        elif self.parent() is not None:
            self.show()

    def _prompt_box(self, p, value):
        """A line edit for a prompt; -1 (no prompt) shows as an empty box."""
        from magicgui.widgets import LineEdit

        text = value if isinstance(value, str) else ""
        first = p.name == "target"
        w = LineEdit(value=text, name=p.name, label="Prompt" if first else "Contrast prompt")
        w.native.setPlaceholderText("a photo of a dog" if first else "none (or: a photo of a cat)")
        w.tooltip = ("text whose similarity with the image is explained (Enter to compute)" if first else
                     "a second prompt whose similarity is subtracted: why the first prompt rather than "
                     "this one (empty: none)")
        self._text[p.name] = text
        w.native.editingFinished.connect(lambda name=p.name, box=w: self._on_prompt_commit(name, box))
        return w

    def _on_prompt_commit(self, name: str, box) -> None:
        self._text[name] = box.value.strip()
        self._on_change()

    def values(self) -> dict:
        if self._container is None:
            return {}
        return {w.name: (self._text[w.name] or -1) if w.name in self._text else w.value for w in self._container}

    def set_values(self, params: dict) -> None:
        """Show `params` without emitting `changed`."""
        if self._container is None:
            return
        with QtCore.QSignalBlocker(self):
            for w in self._container:
                if w.name in self._text and w.name in params:  # a prompt box: -1 is an empty box
                    self._text[w.name] = params[w.name] if isinstance(params[w.name], str) else ""
                    with w.changed.blocked():
                        w.value = self._text[w.name]
                elif w.name in params and w.value != params[w.name]:
                    with w.changed.blocked():
                        w.value = params[w.name]
        self._shown = self.values()

    def widget(self, name: str):
        """The magicgui widget of parameter `name` (tests, shortcuts)."""
        return self._container[name]

    def _on_change(self, *_):
        values = self.values()
        if not self.signalsBlocked() and values != self._shown:  # (a key typed in a prompt box: not yet)
            self._shown = values
            self.changed.emit(values)
