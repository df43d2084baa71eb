"""Where vitviz's bundled files are (sample scenes, demo weights, icons, class names)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_dir() -> Path:
    """The resources folder: inside the installed package (wheel, frozen bundle) or, for a source
    checkout / editable install, the repository's top-level resources/."""
    packaged = resources.files("vitviz") / "resources"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)


def sample_images() -> list[Path]:
    folder = resource_path("samples")
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
