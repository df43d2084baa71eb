"""vitviz: see inside vision transformers."""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("vitviz")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"


def analyze(*args, **kwargs):
    """See vitviz.core.api.analyze (imported lazily so `import vitviz` stays light)."""
    from .core.api import analyze as _analyze

    return _analyze(*args, **kwargs)


def analyze_many(*args, **kwargs):
    """See vitviz.core.batch.many.analyze_many: many images, batched forwards, one result each."""
    from .core.batch.many import analyze_many as _analyze_many

    return _analyze_many(*args, **kwargs)


def methods(family: str | None = None):
    """The map-producing methods (vitviz.core.methods.Method declarations), for `family` if given."""
    from .core.methods import methods as _methods

    return _methods(family)


__all__ = ["methods", "analyze", "analyze_many", "__version__"]
