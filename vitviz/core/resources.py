"""Where vitviz's bundled files are (sample scenes, demo weights, icons, class names).

The repository keeps them in its top-level resources/ folder; the wheel ships that folder inside the
package as vitviz/resources (pyproject.toml maps it), and the PyInstaller bundle puts it at
<bundle>/vitviz/resources (packaging/pyinstaller/vitviz.spec).
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path


def resource_dir() -> Path:
    """The resources folder, first match of:
    - a frozen PyInstaller bundle: sys._MEIPASS/vitviz/resources;
    - an installed wheel: vitviz/resources inside the package (through importlib.resources);
    - a source checkout or an editable install: the repository's top-level resources/."""
    for candidate in _candidates():
        if candidate.is_dir():
            return candidate
    # Nothing found (a broken install): name the place a source checkout would have, so errors
    # about a missing sample or weight file point somewhere sensible.
    return _repo_resources()


def _candidates() -> list[Path]:
    found = []
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        found.append(Path(bundle) / "vitviz" / "resources")
    # a plain folder on disk for a wheel or an editable install (not supported: zip imports)
    found.append(Path(str(resources.files("vitviz") / "resources")))
    found.append(_repo_resources())
    return found


def _repo_resources() -> Path:
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)


def sample_images() -> list[Path]:
    folder = resource_path("samples")
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def app_icon_files() -> list[Path]:
    """The application icon: the rendered PNG sizes (hand-tuned at 16/24 px) and the SVG master, for
    QIcon.addFile on each; the SVG alone scales the 256 px drawing down to mush at 16 px."""
    folder = resource_path("icons")
    pngs = sorted(folder.glob("vitviz-[0-9]*.png"), key=lambda p: int(p.stem.split("-")[1]))
    svg = folder / "vitviz.svg"
    return pngs + ([svg] if svg.is_file() else [])
