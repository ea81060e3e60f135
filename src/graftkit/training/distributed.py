"""Which process this is in a data-parallel run (``torchrun`` / ``accelerate launch`` set these variables)."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
