"""A weights file in torch hub's cache is checked against the sha256 prefix its name promises
("vit_b_16-c867db91.pth") before it is loaded. A file that does not match (a cut or damaged copy,
one rewritten by something else) is refused: never unpickled, moved aside to "<name>.damaged" so
the model's weights show as downloadable again (the window then offers the download), and the
error says what happened and how to get a good copy. A file is hashed once per process while its
size and modification time stay the same (~0.6 s for ViT-B/16's 330 MB here).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import urllib.parse
from pathlib import Path

from .errors import CheckpointError

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.[^-]*$")  # torch hub names: "vit_b_16-c867db91.pth"


def file_name_of(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def expected_hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix a file name promises ("vit_b_16-c867db91.pth" -> "c867db91"), or None."""
    m = _HASH_IN_NAME.search(file_name)
    return m.group(1) if m else None


def manual_instructions(url: str, folder: Path) -> str:
    name = file_name_of(url)
    return f"To install it by hand, download {url} and save it as {folder / name} (file name {name!r})."

DAMAGED_SUFFIX = ".damaged"
_verified: dict = {}  # (path, size, mtime_ns) -> sha256 hex digest
_lock = threading.Lock()


class DamagedCacheFileError(CheckpointError):
    """A cached weights file's sha256 does not match its name. `path` is where it was, `moved_to`
    where it is now (None if it could not be moved), `url` where a good copy comes from."""

    def __init__(self, message: str, path: Path, moved_to: Path | None, url: str | None):
        super().__init__(message)
        self.path, self.moved_to, self.url = path, moved_to, url


def _key(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """The sha256 hex digest of `path` (memoised while the file's size and mtime stay the same)."""
    key = _key(path)
    with _lock:
        if key in _verified:
            return _verified[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    with _lock:
        _verified[key] = digest
    return digest


def remember_verified(path: Path, digest: str) -> None:
    """A file just downloaded and checked: no need to hash it again when it is loaded."""
    with _lock:
        _verified[_key(Path(path))] = digest


def verify_cached_weights(path: str | os.PathLike, url: str | None = None) -> Path:
    """`path` if its sha256 begins with the prefix its name carries (or it carries none); else the
    file is moved aside and DamagedCacheFileError says so."""
    path = Path(path)
    expected = expected_hash_prefix(path.name)
    if not expected:
        return path
    digest = file_sha256(path)
    if digest.startswith(expected):
        return path
    moved: Path | None = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        os.replace(path, moved)
    except OSError:
        moved = None
    where = (f"It was moved aside to {moved}, so a fresh copy can be downloaded in its place"
             if moved else "It could not be moved aside (the folder is read-only?); delete it by hand")
    raise DamagedCacheFileError(
        f"The cached weights file {path} is damaged: its sha256 begins {digest[:len(expected)]}, its name "
        f"promises {expected} (a cut-off or overwritten copy). It was not loaded. {where}: choose "
        "the model's pretrained weights again and answer Download (or run `vitviz --download`). "
        + (manual_instructions(url, path.parent) if url else ""), path, moved, url)
