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


__all__ = ["analyze", "__version__"]
