"""Fetch weights files into torch hub's cache (`torch.hub.get_dir()/checkpoints`), where torchvision
and torch.hub look too: streamed to a temporary file, hash-checked, then renamed into place.

Only ever called when the user asked for a download; listing models and `weights_state` stay offline.
Set VITVIZ_WEIGHTS_BASE_URL (or pass base_url) to fetch the same file names from a mirror.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Union

from .cache_check import expected_hash_prefix, file_name_of, manual_instructions  # noqa: F401 (public here too)
from .checkpoint_urls import CHECKPOINT_URLS  # noqa: F401 (public here too)
from .weights import cached_weights_path, hub_checkpoint_dir, weights_url

ProgressCallback = Callable[[int, Union[int, None]], None]  # (done_bytes, total_bytes or None)
CancelFlag = Union[Callable[[], bool], "threading.Event", None]  # noqa: F821 (anything with is_set())

BASE_URL_ENV = "VITVIZ_WEIGHTS_BASE_URL"



class DownloadError(RuntimeError):
    """A download failed; the message says what to fetch by hand and where to put it."""


class DownloadCancelled(DownloadError):
    """The cancel flag was raised; nothing was left on disk."""


def effective_url(url: str, base_url: str | None = None) -> str:
    """`url`, or the same file name under `base_url` / $VITVIZ_WEIGHTS_BASE_URL when set."""
    base = base_url or os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{file_name_of(url)}" if base else url


def download_file(url: str, folder: str | os.PathLike | None = None, *,
                  progress: ProgressCallback | None = None, cancel: CancelFlag = None,
                  base_url: str | None = None, timeout: float = 30.0, chunk_size: int = 1 << 20) -> Path:
    """Download `url` into `folder` (default: the torch hub checkpoint folder) and return the path.

    progress(done_bytes, total_bytes) is called after every chunk (total None if the server does
    not say); an exception it raises aborts the download cleanly. `cancel` (a callable returning
    True, or a threading.Event) is checked between chunks. The file appears under its final name
    only once complete and, when its name carries a sha256 prefix, verified."""
    folder = Path(folder) if folder is not None else hub_checkpoint_dir()
    name = file_name_of(url)
    source = effective_url(url, base_url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise DownloadError(f"Cannot write to the weights folder {folder}: {exc.strerror or exc}. "
                            "Set TORCH_HOME to a writable folder.") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, source, out, folder, progress, cancel, timeout, chunk_size)
        expected = expected_hash_prefix(name)
        if expected and not digest.startswith(expected):
            raise DownloadError(
                f"The download of {name} is corrupted: its sha256 begins {digest[:len(expected)]}, the file "
                f"name promises {expected}. The damaged file was deleted; try again. "
                + manual_instructions(url, folder))
        dest = folder / name
        os.replace(tmp, dest)  # atomic on one file system: readers never see a partial file
        if expected:
            from .cache_check import remember_verified

            remember_verified(dest, digest)  # checked as it came in: not hashed again to load it
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, source: str, out, folder: Path, progress: ProgressCallback | None,
           cancel: CancelFlag, timeout: float, chunk_size: int) -> str:
    """Stream `source` into `out`; the sha256 hex digest of what was written."""
    name = file_name_of(url)

    def failed(reason) -> DownloadError:
        return DownloadError(f"Could not download {name} from {source}: {reason}. "
                             + manual_instructions(url, folder))

    sha = hashlib.sha256()
    request = urllib.request.Request(source, headers={"User-Agent": "vitviz"})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise failed(f"the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:  # no network
        raise failed(getattr(exc, "reason", None) or exc) from None
    with resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress:
            progress(0, total)
        while True:
            if _cancelled(cancel):
                raise DownloadCancelled(f"Download of {name} cancelled; nothing was saved.")
            try:
                chunk = resp.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:  # cut off mid-way
                raise failed(f"the connection broke after {done} bytes ({type(exc).__name__})") from None
            if not chunk:
                break
            out.write(chunk)
            sha.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    if total is not None and done != total:
        raise failed(f"it stopped after {done} of {total} bytes")
    return sha.hexdigest()


def _cancelled(cancel: CancelFlag) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    return bool(is_set() if is_set is not None else cancel())


def download_weights(spec, *, progress: ProgressCallback | None = None, cancel: CancelFlag = None,
                     base_url: str | None = None) -> Path:
    """The pretrained weights of `spec` (a ModelSpec or registry name) in the hub cache, downloaded
    if they are not there yet."""
    from .registry import get_spec

    spec = get_spec(spec) if isinstance(spec, str) else spec
    cached = cached_weights_path(spec)
    if cached is not None:
        return cached
    url = weights_url(spec)
    if url is None:
        raise DownloadError(f"{spec.label} has no published weights to download.")
    return download_file(url, progress=progress, cancel=cancel, base_url=base_url)
