"""Where graftkit keeps what it can rebuild: ``$GRAFTKIT_CACHE``, else ``$XDG_CACHE_HOME/graftkit`` (``~/.cache``).

``features/`` holds the feature cache, ``onnx/`` the exported backbone graphs of frozen extraction."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("GRAFTKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "graftkit"
    return Path(root)
