"""Atomic file writes: the whole file appears under its name at once, or nothing does; and the lock that keeps
two processes from writing one output.

Written to a temporary sibling, flushed to disk, then renamed over the target (``os.replace``); on any error
the temporary file goes and the old file (if any) is untouched. The file gets the mode ``open()`` would give
it (``0o666`` less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
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


@contextmanager
def output_lock(path):
    """Hold ``.NAME.lock`` beside ``path`` while this process writes it: a second process aiming at the same output
    is refused (``ArtifactError`` naming the holder) instead of interleaving its files. A lock left by a process
    that is gone is taken over; nesting in one process is allowed (the CLI holds it around ``fit`` and ``save``)."""
    from graftkit.errors import ArtifactError

    path = Path(path).expanduser()
    lock = path.parent / f".{path.name}.lock"
    if not lock.parent.is_dir():  # nothing can be writing there yet, and a failed run must not leave the folder
        yield None
        return
    owner = _lock_owner(lock)
    if owner == os.getpid():
        yield lock
        return
    if owner is not None and _alive(owner):
        raise ArtifactError(f"another graftkit process (pid {owner}) is writing {str(path)!r}; wait for it to finish, "
                            f"or remove {str(lock)!r} if that process is gone")
    lock.unlink(missing_ok=True)  # stale: its process is gone
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise ArtifactError(f"another graftkit process started writing {str(path)!r} just now; wait for it to "
                            "finish") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def swap_directory(staging, path) -> None:
    """Move the finished directory ``staging`` to ``path``; an existing ``path`` survives until the new one is in
    place (the caller has checked that replacing it is allowed)."""
    import shutil
    import uuid

    staging, path = Path(staging), Path(path)
    if path.is_dir() and any(path.iterdir()):
        retired = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, retired)
        try:
            os.replace(staging, path)
        except BaseException:
            os.replace(retired, path)
            raise
        shutil.rmtree(retired, ignore_errors=True)
    else:
        if path.is_dir():
            path.rmdir()
        os.replace(staging, path)


def check_output_directory(path, overwrite: bool, *, holds, what: str) -> None:
    """Refuse an output directory ``-o DIR`` before any work: a file, a path under a file, a non-empty directory
    that ``holds(path)`` says is not ours (a user's folder is never written into), or one of ours without
    ``overwrite``. ``what`` names what the directory would hold ("model", "pretrained backbone")."""
    from graftkit.errors import ArtifactError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"output {str(path)!r} is a file; give a directory path (-o DIR)")
    parent = next((p for p in Path(os.path.abspath(path)).parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ArtifactError(f"output {str(path)!r} lies under {str(parent)!r}, which is a file; give a directory "
                            "path (-o DIR)")
    if path.is_dir() and any(path.iterdir()):
        if not holds(path):
            raise ArtifactError(f"output directory {str(path)!r} is not empty and holds no graftkit {what}; "
                                "graftkit will not write into it; choose a new -o DIR")
        if not overwrite:
            raise ArtifactError(f"output directory {str(path)!r} already holds a {what}; pass --overwrite "
                                "(overwrite=True) to replace it or choose another -o DIR")
