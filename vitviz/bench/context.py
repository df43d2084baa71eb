"""What every benchmark step shares: options, the test image, results handed from step to step."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BenchContext:
    device: str = "cpu"
    quick: bool = False  # CI mode: few repeats, fewer queries; every row is still produced
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vitviz-bench-")))
    analyses: dict = field(default_factory=dict)  # model name -> analysis, for later steps

    def repeats(self, full: int, quick: int = 3) -> int:
        return quick if self.quick else full

    @property
    def image_path(self) -> Path:
        """A 640x480 RGB test image (smooth shapes plus noise, fixed seed), written once."""
        path = self.workdir / "bench-640x480.png"
        if not path.is_file():
            import numpy as np
            from PIL import Image

            rng = np.random.default_rng(0)
            y, x = np.mgrid[0:480, 0:640]
            base = np.stack([x / 640, y / 480, 0.5 + 0.5 * np.sin(x / 37.0 + y / 53.0)], -1) * 200
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img, "RGB").save(path)
        return path

    def child_env(self) -> dict:
        """Environment for benchmark subprocesses: settings and caches kept inside workdir."""
        env = dict(os.environ)
        env["XDG_CONFIG_HOME"] = str(self.workdir / "config")  # the app's QSettings
        env["VITVIZ_NO_DIALOGS"] = "1"
        if qt_platform():
            env["QT_QPA_PLATFORM"] = qt_platform()
        return env


def qt_platform() -> str:
    """The Qt platform to use: what QT_QPA_PLATFORM says, else offscreen on a Linux without display."""
    import sys

    if os.environ.get("QT_QPA_PLATFORM"):
        return os.environ["QT_QPA_PLATFORM"]
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "offscreen"
    return ""
