"""Which process this is in a data-parallel run (``torchrun`` / ``accelerate launch`` set these variables)."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true in any process of a data-parallel run (an all-reduce MAX), else ``flag``.

    A decision that reads a local clock (the time budget) must be the same in every process: a process that
    stopped alone would leave the others waiting in the next gradient all-reduce forever."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
