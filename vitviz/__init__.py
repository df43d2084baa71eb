"""vitviz: see inside vision transformers.

    import vitviz
    a = vitviz.analyze("cat.jpg", model="vit_b_16")
    a.explain("relevance", target=281)

The public functions are the real ones (help() shows their signatures), loaded on first use so that
`import vitviz` stays light (no numpy, no torch)."""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("vitviz")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

# name -> the module that defines it (PEP 562 lazy attributes)
_LAZY = {
    "analyze": "vitviz.core.api",
    "get_model": "vitviz.core.api",
    "analyze_many": "vitviz.core.batch.many",
    "methods": "vitviz.core.methods",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'vitviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
