"""The comparison window's columns: which maps to show, each with its own parameters.

A column is one method with its own values: the view context the method takes (a ViT's layer and
head for raw attention) and its declared parameters (vitviz.core.methods.Param: discard ratio,
head fusion, baseline, block, ...), edited in a form built from those declarations by the same
MethodForm the main window's panels use. The target class is the window's (one for every column),
so it is not in the form. A method can have several columns ("Duplicate"), e.g. attention at two
layers or rollout at two discard ratios side by side.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6 import QtCore, QtWidgets

from .method_form import MethodForm

HEADS = ("mean", "max", "min")
WINDOW_PARAMS = ("target",)  # the window's: one target for every column
_METHOD, _PARAMS, _COPY = (QtCore.Qt.ItemDataRole.UserRole + i for i in range(3))


@dataclass(frozen=True)
class Entry:
    """One map to compare: a method with its view context and parameters (as analysis.explain takes them)."""

    method: str
    kwargs: tuple = ()  # (name, value) pairs: the context, then the parameters that differ from the defaults
    key: str = ""  # unique in the window: method and kwargs, "#2"... for a second identical column

    def __post_init__(self):
        if not self.key:
            object.__setattr__(self, "key", self.base_key)

    @property
    def base_key(self) -> str:
        return self.method + "".join(f" {k}={v}" for k, v in self.kwargs)

    def title(self) -> tuple[str, str]:
        """(the method's title, its context and parameters as 'k=v, ...'; the target is the window's)."""
        from ..core.methods import get_method

        m = get_method(self.method)
        kw = dict(self.kwargs)
        shown = {k: v for k, v in kw.items() if k in m.context}
        resolved = m.resolve({k: v for k, v in kw.items() if k not in m.context})
        shown.update({k: v for k, v in resolved.items()
                      if k not in WINDOW_PARAMS and not (k == "contrast" and v == -1)})
        return m.title, ", ".join(f"{k}={v}" for k, v in shown.items())

    def short(self) -> str:
        """The method's title with its context and changed parameters: for legends and the table."""
        from ..core.methods import get_method

        ctx = ", ".join(f"{k} {v}" for k, v in self.kwargs)
        n = self.key[len(self.base_key):].strip()
        return get_method(self.method).title + (f" ({ctx})" if ctx else "") + (f" {n}" if n else "")


def context_params(method, analysis) -> tuple:
    """The view context a column sets itself, as Params: a ViT's layer and head."""
    from ..core.methods import Param

    if analysis is None or analysis.family != "vit":
        return ()
    out = []
    if "layer" in method.context:
        n = analysis.num_layers
        out.append(Param("layer", -1, min=-n, max=n - 1, label="Layer",
                         help=f"0..{n - 1}, or negative from the last (-1: the last layer)"))
    if "head" in method.context:
        out.append(Param("head", "mean", choices=(*HEADS, *map(str, range(analysis.num_heads))), label="Head",
                         help="one head, or the heads fused by mean / max / min"))
    return tuple(out)


def form_method(method, analysis):
    """The declaration the column's form is built from: context Params, then the method's own
    (without the window's target)."""
    own = tuple(p for p in method.params if p.name not in WINDOW_PARAMS)
    return replace(method, params=context_params(method, analysis) + own)


def entry_for(method, analysis, values: dict) -> Entry:
    """The Entry of a column whose form shows `values` (context always, parameters when not default)."""
    ctx = {p.name for p in context_params(method, analysis)}
    full = form_method(method, analysis).resolve({k: v for k, v in values.items()
                                                  if k in {p.name for p in form_method(method, analysis).params}})
    kw = []
    for p in form_method(method, analysis).params:
        v = full[p.name]
        if p.name == "head" and isinstance(v, str) and v.isdigit():
            v = int(v)
        if p.name in ctx or v != p.default:
            kw.append((p.name, v))
    return Entry(method.name, tuple(kw))


class ColumnEditor(QtWidgets.QWidget):
    """The list of methods (ticked: shown), Duplicate / Remove, and the selected column's parameters.
    `changed` fires when the columns shown or any of their parameters change."""

    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.analysis = None
        self._kept: list = []
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QtWidgets.QLabel("Methods (one column each)"))
        self.method_list = QtWidgets.QListWidget()
        self.method_list.itemChanged.connect(self._on_item_change)
        self.method_list.currentItemChanged.connect(self._on_current_change)
        lay.addWidget(self.method_list, 1)
        row = QtWidgets.QHBoxLayout()
        self.duplicate_button = QtWidgets.QPushButton("Duplicate")
        self.duplicate_button.setToolTip("Another column of the selected method, with its own parameters")
        self.duplicate_button.clicked.connect(self.duplicate)
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected copy (each method keeps one row)")
        self.remove_button.clicked.connect(self.remove)
        row.addWidget(self.duplicate_button)
        row.addWidget(self.remove_button)
        lay.addLayout(row)
        self.params_box = QtWidgets.QGroupBox("Parameters")
        box = QtWidgets.QVBoxLayout(self.params_box)
        box.setContentsMargins(6, 4, 6, 4)
        self.form = MethodForm()
        self.form.changed.connect(self._on_params_change)
        self.no_params = QtWidgets.QLabel("This method has no parameters.")
        self.no_params.setEnabled(False)
        box.addWidget(self.form)
        box.addWidget(self.no_params)
        lay.addWidget(self.params_box)
        self._update_buttons()

    # ---------------------------------------------------------------------------------- filling

    def set_analysis(self, analysis, default=()) -> None:
        """The methods for `analysis`'s family; ticks and each column's parameters carry over where
        the method is still there (a parameter the new model cannot take goes back to its default)."""
        from ..core.methods import methods

        old = [(it.data(_METHOD), it.data(_PARAMS), it.data(_COPY), it.checkState()) for it in self._items()]
        old = old or self._kept  # the rows from before a result the window cannot compare (DETR)
        self._kept = old
        chosen = {m for m, _, _, s in old if s == QtCore.Qt.CheckState.Checked} or set(default)
        self.analysis = analysis
        with QtCore.QSignalBlocker(self.method_list):
            self.method_list.clear()
            if analysis is None:
                self._show_form(None)
                return
            for m in methods(analysis.family):
                if m.name == "attention" and analysis.family != "vit":
                    continue  # Swin's raw attention is of one token's window: not a whole-image map
                rows = [o for o in old if o[0] == m.name] or [(m.name, {}, False, None)]
                for name, params, copy, state in rows:
                    on = state == QtCore.Qt.CheckState.Checked if state is not None else name in chosen
                    self._add_item(m, self._valid(m, params or {}), bool(copy), on)
            if self.method_list.count():
                self.method_list.setCurrentRow(0)
        self._on_current_change(self.method_list.currentItem(), None)

    def _valid(self, method, params: dict) -> dict:
        fm = form_method(method, self.analysis)
        out = {}
        for p in fm.params:
            if p.name in params:
                try:
                    out[p.name] = p.check(params[p.name])
                except ValueError:
                    pass
        return fm.resolve(out)

    def _add_item(self, method, params: dict, copy: bool, on: bool, row: int | None = None):
        it = QtWidgets.QListWidgetItem()
        it.setData(_METHOD, method.name)
        it.setData(_PARAMS, dict(params))
        it.setData(_COPY, copy)
        it.setFlags(it.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
        it.setCheckState(QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked)
        if row is None:
            self.method_list.addItem(it)
        else:
            self.method_list.insertItem(row, it)
        self._label(it)
        return it

    def _label(self, it) -> None:
        """The method's title with its context and the parameters changed from their defaults."""
        e = self._entry(it)
        title, params = e.title()
        copy = " (copy)" if it.data(_COPY) and e.short() == title else ""
        with QtCore.QSignalBlocker(self.method_list):
            it.setText(e.short() + copy)
            it.setToolTip(f"{title}: {params}" if params else title)

    def _items(self) -> list:
        return [self.method_list.item(i) for i in range(self.method_list.count())]

    def _entry(self, it) -> Entry:
        from ..core.methods import get_method

        return entry_for(get_method(it.data(_METHOD)), self.analysis, it.data(_PARAMS))

    # ---------------------------------------------------------------------------------- reading

    def entries(self) -> list[Entry]:
        """The ticked columns in list order, each key unique ("#2" for a second identical column)."""
        out, seen = [], {}
        for it in self._items():
            if it.checkState() != QtCore.Qt.CheckState.Checked:
                continue
            e = self._entry(it)
            n = seen[e.base_key] = seen.get(e.base_key, 0) + 1
            out.append(e if n == 1 else replace(e, key=f"{e.base_key} #{n}"))
        return out

    def chosen_methods(self) -> list[str]:
        return [it.data(_METHOD) for it in self._items() if it.checkState() == QtCore.Qt.CheckState.Checked]

    # ---------------------------------------------------------------------------------- editing

    def set_methods(self, names) -> None:
        """Tick exactly the rows of these methods."""
        with QtCore.QSignalBlocker(self.method_list):
            for it in self._items():
                on = it.data(_METHOD) in names
                it.setCheckState(QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked)
        self.changed.emit()

    def select(self, key: str) -> None:
        """Make the row of the column `key` current (its parameters in the form)."""
        keys = {e.key: i for i, e in enumerate(self.entries())}
        ticked = [it for it in self._items() if it.checkState() == QtCore.Qt.CheckState.Checked]
        if key in keys:
            self.method_list.setCurrentItem(ticked[keys[key]])

    def set_params(self, row: int, params: dict) -> None:
        """Set parameters of list row `row` (for scripts and tests), as if typed into its form."""
        it = self.method_list.item(row)
        merged = self._valid_strict(it, {**it.data(_PARAMS), **params})
        with QtCore.QSignalBlocker(self.method_list):
            it.setData(_PARAMS, merged)
        self._label(it)
        if it is self.method_list.currentItem():
            self.form.set_values(merged)
        if it.checkState() == QtCore.Qt.CheckState.Checked:
            self.changed.emit()

    def _valid_strict(self, it, params: dict) -> dict:
        from ..core.methods import get_method

        return form_method(get_method(it.data(_METHOD)), self.analysis).resolve(params)

    def row_of(self, method: str, nth: int = 0) -> int:
        rows = [i for i, it in enumerate(self._items()) if it.data(_METHOD) == method]
        if nth >= len(rows):
            raise KeyError(f"no row {nth} of {method!r}")
        return rows[nth]

    def duplicate(self) -> None:
        """A copy of the current row below it, ticked, with the same parameters, and current."""
        from ..core.methods import get_method

        it = self.method_list.currentItem()
        if it is None:
            return
        row = self.method_list.row(it)
        with QtCore.QSignalBlocker(self.method_list):
            new = self._add_item(get_method(it.data(_METHOD)), it.data(_PARAMS), True, True, row + 1)
        self.method_list.setCurrentItem(new)
        self.changed.emit()

    def remove(self) -> None:
        it = self.method_list.currentItem()
        if it is None or not it.data(_COPY):
            return
        was_on = it.checkState() == QtCore.Qt.CheckState.Checked
        self.method_list.takeItem(self.method_list.row(it))
        if was_on:
            self.changed.emit()

    def _update_buttons(self) -> None:
        it = self.method_list.currentItem()
        self.duplicate_button.setEnabled(it is not None)
        self.remove_button.setEnabled(it is not None and bool(it.data(_COPY)))

    def _show_form(self, it) -> None:
        from ..core.methods import get_method

        if it is None:
            self.params_box.setTitle("Parameters")
            self.form.hide()
            self.no_params.show()
            return
        m = form_method(get_method(it.data(_METHOD)), self.analysis)
        self.params_box.setTitle(f"Parameters: {m.title}")
        with QtCore.QSignalBlocker(self.form):
            self.form.set_method(m, it.data(_PARAMS))
        self.form.setVisible(bool(m.params))
        self.no_params.setVisible(not m.params)

    @QtCore.Slot(object, object)
    def _on_current_change(self, it, _previous) -> None:
        self._show_form(it)
        self._update_buttons()

    @QtCore.Slot(object)
    def _on_item_change(self, _it) -> None:
        self.changed.emit()

    @QtCore.Slot(dict)
    def _on_params_change(self, values: dict) -> None:
        it = self.method_list.currentItem()
        if it is None or dict(values) == it.data(_PARAMS):
            return  # (a spin box can report one edit twice)
        with QtCore.QSignalBlocker(self.method_list):  # (itemChanged is for the tick box)
            it.setData(_PARAMS, dict(values))
        self._label(it)
        if it.checkState() == QtCore.Qt.CheckState.Checked:
            self.changed.emit()
