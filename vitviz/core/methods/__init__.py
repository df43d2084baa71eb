"""Map-producing methods as plug-ins: one module per method in this package declares a `METHOD`.

A declaration says what the method is called, its typed parameters (defaults, ranges, choices),
whether it needs gradients, and, per family, the function that computes its map from an analysis.
From that alone the GUI builds a method selector with parameter controls, the CLI takes
`--method NAME --param key=value`, sidecars record it and the benchmark can time it.

    vitviz.methods()                         every declaration
    analysis.explain("rollout", query="cls", discard_ratio=0.9)

Parameters of a method (head_fusion, discard_ratio, ...) are validated here; the *context* a map is
for (layer, head, query, direction: what the view selects) is passed through to the family's
function, which checks it against the analysis.
"""
from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from importlib import import_module

import numpy as np

from ..named import NamedTable


@dataclass(frozen=True)
class Param:
    """One typed parameter. The type is the default's type (bool, int, float or str)."""

    name: str
    default: object
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None  # inclusive unless max_open
    max_open: bool = False
    step: float | None = None
    label: str = ""
    help: str = ""

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, value):
        """`value` converted to the parameter's type; ValueError says what is accepted."""
        t = self.type
        try:
            if t is bool:
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("1", "true", "yes")
                v = bool(value)
            elif t is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                v = int(value)
            elif t is float:
                v = float(value)
                if not np.isfinite(v):
                    raise ValueError
            else:
                v = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {t.__name__}, not {value!r}") from None
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, not {v!r}")
        if self.min is not None and v < self.min:
            raise ValueError(f"{self.name} must be at least {self.min}, not {v}")
        if self.max is not None and (v >= self.max if self.max_open else v > self.max):
            raise ValueError(f"{self.name} must be {'below' if self.max_open else 'at most'} {self.max}, not {v}")
        return v


def resolve_params(what: str, declared, given: dict | None) -> dict:
    """`given` with the declared Params' defaults filled in and every value checked; a name not
    declared is an error naming `what` ("method 'rollout'") and what it takes."""
    given = dict(given or {})
    known = {p.name for p in declared}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{what} has no parameter {', '.join(unknown)} "
                         f"(it takes: {', '.join(sorted(known)) or 'none'})")
    return {p.name: p.check(given.get(p.name, p.default)) for p in declared}


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    compute: dict  # family -> "module:function"; function(analysis, **context, **params) -> (rows, cols)
    params: tuple = ()
    needs_grad: bool = False
    description: str = ""
    value_label: str = "attention"
    context: tuple = ("query",)  # what the view supplies: a subset of layer, head, query, direction
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def families(self) -> tuple:
        return tuple(self.compute)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve(self, params: dict | None = None) -> dict:
        """Defaults filled in and every value checked; an unknown name is an error."""
        return resolve_params(f"method {self.name!r}", self.params, params)

    def function(self, family: str):
        if family not in self.compute:
            raise ValueError(f"method {self.name!r} is not available for {family} models "
                             f"(it works with: {', '.join(self.families)})")
        module, attr = self.compute[family].split(":")
        return getattr(import_module(module), attr)

    def split(self, kwargs: dict) -> tuple[dict, dict]:
        """kwargs -> (context, params)."""
        ctx = {k: v for k, v in kwargs.items() if k in self.context}
        return ctx, {k: v for k, v in kwargs.items() if k not in self.context}

    def __call__(self, analysis, **kwargs) -> np.ndarray:
        context, params = self.split(kwargs)
        return self.function(analysis.family)(analysis, **context, **self.resolve(params))

    def describe(self, params: dict | None = None) -> str:
        """'rollout (head_fusion=mean, discard_ratio=0.9)': for titles and captions."""
        p = self.resolve(params)
        return self.title + (f" ({', '.join(f'{k}={v}' for k, v in p.items())})" if p else "")


_METHODS: NamedTable[Method] = NamedTable("method")
_loaded = False


def _load_builtin() -> None:
    """Import every module of this package once; each declares METHOD (lazy: numpy only)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    names = [info.name for info in pkgutil.iter_modules(__path__, __name__ + ".")]
    first = [__name__ + ".attention", __name__ + ".rollout"]  # the class-agnostic maps lead the lists
    for name in sorted(names, key=lambda n: (n not in first, first.index(n) if n in first else 0, n)):
        mod = import_module(name)
        if isinstance(getattr(mod, "METHOD", None), Method):
            _METHODS.setdefault(mod.METHOD)


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add a method from outside vitviz (a plug-in); every front end lists it from then on."""
    _load_builtin()
    return _METHODS.register(method, replace=replace)


def unregister_method(name: str) -> None:
    _METHODS.unregister(name)


def methods(family: str | None = None) -> list[Method]:
    """The declarations, built-ins first; only those for `family` when given."""
    _load_builtin()
    return [m for m in _METHODS if family is None or family in m.compute]


def get_method(name: str) -> Method:
    _load_builtin()
    return _METHODS.get(name)


def parse_param(text: str) -> tuple[str, str]:
    """'key=value' (the CLI's --param) -> (key, value-as-text)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--param wants key=value, not {text!r}")
    return key.strip(), value.strip()
