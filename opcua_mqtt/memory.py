"""Handing the heap that start-up freed back to the operating system.

Start-up allocates far more short-lived objects than the bridge keeps (the configuration taken
back from its checking process, monitored items created in batches, their requests and
responses). glibc keeps freed pages in the process unless asked; ``malloc_trim(0)`` returns
what it can (measured: tens of MiB at 100,000 items). Elsewhere (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

_log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    try:  # the symbols the process already has: its C library's among them
        func: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc, or no dlopen(NULL)
        return None
    return func


_TRIM = _malloc_trim()


def trim(why: str) -> bool:
    """Return freed heap pages to the OS (glibc only); True when glibc released some."""
    if _TRIM is None:
        return False
    released = bool(_TRIM(0))
    _log.debug("malloc_trim after %s: %s", why, "released memory" if released else "nothing")
    return released
