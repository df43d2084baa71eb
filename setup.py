"""Build configuration that pyproject.toml cannot express: the repository's top-level resources/
folder (sample scenes, demo weights, icons) is shipped inside the package as vitviz/resources, so an
installed vitviz finds it with importlib.resources (see vitviz/core/resources.py). Everything else,
metadata included, lives in pyproject.toml."""
from setuptools import find_namespace_packages, setup

setup(
    # vitviz/gui/views has no __init__.py, so namespace discovery, as pyproject's find did.
    packages=find_namespace_packages(include=["vitviz", "vitviz.*"]) + ["vitviz.resources"],
    package_dir={"vitviz.resources": "resources"},
)
