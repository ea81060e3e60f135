"""Content keys: a hash of what an example *is* (its text, its file bytes), not where it lives."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from graftkit.errors import DataError


@lru_cache(maxsize=200_000)
def _file_key(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256(b"file\x00")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(item, modality: str, where=lambda: "data") -> str:
    """sha256 of an example's content. ``where`` is a callable giving the row, for error messages."""
    if modality == "text":
        return hashlib.sha256(b"text\x00" + str(item).encode("utf-8", "surrogatepass")).hexdigest()
    if isinstance(item, (str, Path)):
        path = Path(item)
        try:
            stat = path.stat()
        except OSError:
            raise DataError(f"{where()}: file {str(item)!r} does not exist; check the path") from None
        return _file_key(str(path), stat.st_size, stat.st_mtime_ns)
    if isinstance(item, bytes):
        return hashlib.sha256(b"bytes\x00" + item).hexdigest()
    if isinstance(item, dict):
        if item.get("bytes"):
            return content_key(item["bytes"], modality, where)
        if item.get("array") is not None:
            array = np.ascontiguousarray(item["array"], dtype=np.float32)
            return hashlib.sha256(f"audio\x00{item.get('sampling_rate')}\x00".encode() + array.tobytes()).hexdigest()
        if item.get("path"):
            return content_key(Path(item["path"]), modality, where)
    if hasattr(item, "tobytes") and hasattr(item, "mode"):  # PIL image
        return hashlib.sha256(f"pil\x00{item.mode}\x00{item.size}\x00".encode() + item.tobytes()).hexdigest()
    raise DataError(f"{where()}: cannot read an example of type {type(item).__name__}")

