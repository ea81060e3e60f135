"""Content-addressed, memory-mapped feature cache.

Layout: ``ROOT/<backbone fingerprint>/<shard>.npy`` + ``<shard>.keys`` (one content key per row).
A shard's keys file is written last, by atomic rename, so a shard only counts once complete;
a crash leaves at most an orphan ``.npy`` that is never read. Appending rows to a data set embeds
only the rows whose content is not cached yet, into a new shard.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graftkit.atomic import write_atomic
from graftkit.paths import cache_root

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return cache_root() / "features"


class FeatureCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def lookup(self, fingerprint: str | Callable[[], str], keys: list[str], compute) -> tuple[np.ndarray, int]:
        """Features for ``keys``; ``compute(positions)`` embeds the missing ones. Returns (features, n computed).

        ``fingerprint`` may be a function, asked again after ``compute``: where computing changed what produces the
        features (onnxruntime failed its check and PyTorch took over), they are filed under the new identity and
        every row is looked up there, so one matrix never mixes two runtimes' features."""
        key_now = fingerprint if callable(fingerprint) else lambda: fingerprint
        identity = key_now()
        folder = self.root / identity[:32]
        index = self._index(folder)
        missing = sorted({k for k in keys if k not in index})
        if missing:
            first_position = {}
            for position, key in enumerate(keys):
                first_position.setdefault(key, position)
            computed = compute([first_position[k] for k in missing])
            if key_now() != identity:
                self._write_shard(self.root / key_now()[:32], missing, computed)
                features, embedded = self.lookup(key_now, keys, compute)
                return features, embedded + len(missing)
            self._write_shard(folder, missing, computed)
            index = self._index(folder)
        logger.info("feature cache: %d of %d examples cached, %d embedded", len(keys) - len(missing), len(keys),
                    len(missing))
        shards: dict[str, np.ndarray] = {}
        needed: dict[str, int] = {}  # per shard, the rows the index points into
        for shard, row in index.values():
            needed[shard] = max(needed.get(shard, 0), row + 1)
        rows = []
        for key in keys:
            shard, row = index[key]
            if shard not in shards:
                shards[shard] = self._load_shard(folder, shard, needed[shard])
                if shards[shard] is None:  # damaged: drop it and embed those rows again
                    return self.lookup(fingerprint, keys, compute)
            rows.append(shards[shard][row])
        return np.stack(rows).astype(np.float32, copy=False), len(missing)

    @staticmethod
    def _load_shard(folder: Path, shard: str, rows: int):
        """The shard's features, or None (and the shard removed) when its file is truncated or not a feature
        matrix with a row per key: a damaged cache costs a recomputation, never a wrong feature or a traceback."""
        path = folder / f"{shard}.npy"
        try:
            features = np.load(path, mmap_mode="r")
            if features.ndim != 2 or features.shape[0] < rows:
                raise ValueError(f"shape {features.shape} for {rows} keys")
            return features
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("feature cache: shard %s is damaged (%s); it is removed and its rows embedded again",
                           path, exc)
            for suffix in (".keys", ".npy"):
                (folder / f"{shard}{suffix}").unlink(missing_ok=True)
            return None

    @staticmethod
    def _index(folder: Path) -> dict[str, tuple[str, int]]:
        index: dict[str, tuple[str, int]] = {}
        if not folder.is_dir():
            return index
        for keys_file in sorted(folder.glob("*.keys")):
            shard = keys_file.stem
            if not (folder / f"{shard}.npy").is_file():
                continue
            for row, key in enumerate(keys_file.read_text().split()):
                index.setdefault(key, (shard, row))
        return index

    @staticmethod
    def _write_shard(folder: Path, keys: list[str], features: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        shard = uuid.uuid4().hex
        for suffix, write in ((".npy", lambda f: np.save(f, np.asarray(features, dtype=np.float32))),
                              (".keys", lambda f: f.write("\n".join(keys).encode()))):
            write_atomic(folder / f"{shard}{suffix}", write, binary=True)
