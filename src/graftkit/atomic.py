"""Atomic file writes: the whole file appears under its name at once, or nothing does.

Written to a temporary sibling, flushed to disk, then renamed over the target (``os.replace``); on any error
the temporary file goes and the old file (if any) is untouched. The file gets the mode ``open()`` would give
it (``0o666`` less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write: Callable, *, binary: bool = False) -> Path:
    """``write(handle)`` fills a temporary sibling of ``path``, which then replaces ``path``."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("wb" if binary else "w", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False, **({} if binary else {"encoding": "utf-8"}))
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text))
