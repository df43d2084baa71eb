"""The images the window steps through (Alt+Left/Right): the files and folders the user opened, the
one shown, and the ones that could not be opened (skipped from then on, so a broken file is reported
once instead of on every key press). Plain Python: the window does the opening."""
from __future__ import annotations

from typing import Iterator


class ImageList:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.index: int | None = None  # the shown image's position; None: what is shown is not in the list
        self.failed: dict[str, str] = {}  # path -> why it could not be opened

    def set(self, paths: list[str]) -> None:
        self.paths, self.index, self.failed = list(paths), None, {}

    def shown(self, path: str | None) -> None:
        """The window now shows `path` (from the list or not)."""
        self.index = self.paths.index(path) if path in self.paths else None

    def fail(self, path: str, why: str) -> None:
        self.failed[path] = why

    def candidates(self, delta: int) -> Iterator[tuple[int, str]]:
        """The positions to try, in order, stepping by `delta` from the shown one (from the start
        when none is shown), skipping the ones that failed; each at most once."""
        n = len(self.paths)
        if n == 0:
            return
        if self.index is None:
            order = range(n) if delta > 0 else range(n - 1, -1, -1)
        else:
            order = [(self.index + delta * k) % n for k in range(1, n)]
        for i in order:
            if self.paths[i] not in self.failed:
                yield i, self.paths[i]

    def position_text(self) -> str:
        """"3/12" when the list has several images and one of them is shown."""
        return f"{self.index + 1}/{len(self.paths)}" if self.index is not None and len(self.paths) > 1 else ""
