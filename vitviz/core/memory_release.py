"""Give freed heap memory back to the operating system.

glibc keeps memory a program frees (a replaced model, the previous image's attention maps) in its
heaps and arenas for reuse, so the resident size only ever climbs to the high-water mark of the
session: the 10,600-event soak ended at 1387 MiB resident with 960 MiB in use (a +359 MiB "growth"
with no live object growing). malloc_trim(0) returns those free pages; it takes a few ms and, called
through ctypes, runs without the GIL. Elsewhere (macOS, Windows, musl) this is a no-op."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_trim = None


def _malloc_trim():
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _trim = fn
            except (OSError, AttributeError):  # not glibc
                pass
    return _trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; True if anything was released."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn else False
