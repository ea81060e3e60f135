"""The one place that sets how many threads compute: torch's intra-op pool, the BLAS / OpenMP pools numpy,
scipy and scikit-learn call into (through ``threadpoolctl``), and the Rust pool of the fast tokenizers.

Each of them sizes itself to every logical CPU by default, and they run one after another in graftkit's
loops (tokenize a window, embed it, fit a head), so a default of one thread per *physical* core keeps
hyper-threads from fighting over the same FPUs; under ``torchrun`` the cores are shared between the processes
on the machine. On a machine other jobs share, fewer threads can be faster (``--threads 1``): every parallel
region waits for its slowest thread, and a preempted thread stalls all of them (bench/RESULTS.md, issue 17).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from graftkit.errors import ConfigError

logger = logging.getLogger(__name__)


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores this process may run on (its CPU affinity; hyper-thread siblings counted once)."""
    cpus = _usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology (macOS, containers): count the CPU itself
    return max(1, len(cores))


def default_threads() -> int:
    """One thread per physical core, divided between the processes ``torchrun`` started on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, physical_cores() // max(local, 1))


def set_threads(threads: int | None = None) -> int:
    """Set every compute thread pool to ``threads`` (default: ``default_threads()``); returns the number set.

    The tokenizers' pool reads ``RAYON_NUM_THREADS`` when it starts, so it is set only where the environment
    does not set it already (a user's choice wins). The onnxruntime sessions of frozen extraction
    (``backbones/onnx_text.OnnxEmbedder``) read torch's count at each call, so they follow this setting too."""
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a whole number >= 1; got {threads!r} (--threads)")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    # every pool threadpoolctl sees: BLAS and OpenMP (scikit-learn's HistGradientBoosting runs on OpenMP; on two
    # busy cores an uncapped pool made one CLI fusion-cv test run 134 s instead of 1.3 s, seen once, not benchmarked)
    threadpool_limits(limits=threads)
    logger.debug("compute threads: %d (torch, BLAS, OpenMP, tokenizers)", threads)
    return threads
