"""Batched feature extraction from a frozen backbone: length-sorted batches, inference mode, progress bar."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from graftkit.errors import GraftkitError

logger = logging.getLogger(__name__)

# Backbones that can tokenise many items at once (``tokenize``) and pad any subset of them (``collate``)
# are read in windows of this many items: each window is tokenised in one call and sorted by exact
# token count, so a batch pads to within a token or two while memory stays bounded on big data sets.
WINDOW = 8192


def default_workers(backbone) -> int:
    """Decoding processes for media backbones: half the physical cores (at most 4) from 4 cores up, so the forward
    pass keeps cores of its own; none on fewer cores (on 2 busy cores a worker did not pay for itself:
    bench/RESULTS.md, issue 17) and none for text, whose batches are tokenised ahead in windows."""
    if backbone.modality not in MEDIA:
        return 0
    from graftkit.threads import physical_cores

    cores = physical_cores()
    return min(4, cores // 2) if cores >= 4 else 0


MEDIA = ("image", "audio")


class _Decoded(Dataset):
    """One batch per index: decode + the backbone's processor, run in a DataLoader worker process. A DataError is
    handed back as a value and raised in the main process, so its one-line message survives (the DataLoader would
    wrap it in a worker traceback)."""

    def __init__(self, backbone, items: list, batches: list, where):
        self.backbone, self.items, self.batches, self.where = backbone, items, batches, where

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        positions = self.batches[index]
        try:
            decoded = [self.backbone.load_item(self.items[p], self.where(int(p))) for p in positions]
            return positions, self.backbone.preprocess(decoded), None
        except GraftkitError as exc:
            return positions, None, exc


def _sorted_batches(backbone, items: list, batch_size: int, where, workers: int = 0):
    """``(positions, batch tensors)`` in length-sorted order, decoding only the items of the batch in hand; with
    ``workers``, batches are decoded and preprocessed in that many processes, ahead of the forward pass."""
    order = np.argsort([-backbone.sort_key(item) for item in items], kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(items), batch_size)]
    if workers < 1 or len(batches) < 2:
        for positions in batches:
            yield positions, backbone.preprocess([backbone.load_item(items[p], where(int(p))) for p in positions])
        return
    loader = DataLoader(_Decoded(backbone, items, batches, where), batch_size=None, shuffle=False,
                        num_workers=min(workers, len(batches)), prefetch_factor=2, persistent_workers=False,
                        multiprocessing_context=_context())
    for positions, batch, error in loader:
        if error is not None:
            raise error
        yield positions, batch


def _context():
    """fork where the platform has it (the backbone is inherited, not pickled); spawn elsewhere."""
    import multiprocessing

    return "fork" if "fork" in multiprocessing.get_all_start_methods() else None


def _tokenized_batches(backbone, items: list, batch_size: int, where):
    """``(positions, batch tensors)``: each window tokenised once, then batched by exact token count."""
    window = max(WINDOW, 16 * batch_size)
    for first in range(0, len(items), window):
        decoded = [backbone.load_item(items[p], where(p)) for p in range(first, min(first + window, len(items)))]
        encoded = backbone.tokenize(decoded)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(decoded))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield rows + first, backbone.collate(encoded, rows)


def _batches(backbone, items, batch_size, where, workers):
    if callable(getattr(backbone, "tokenize", None)) and callable(getattr(backbone, "collate", None)):
        return _tokenized_batches(backbone, items, batch_size, where)
    workers = default_workers(backbone) if workers is None else workers
    return _sorted_batches(backbone, items, batch_size, where, workers)


def extract_features(backbone, items: list, *, batch_size: int = 32, progress: bool = True,
                     where=lambda i: f"row {i + 1}", workers: int | None = None, runtime=None) -> np.ndarray:
    """Pooled features for ``items`` in their original order, shape ``(len(items), hidden_size)``.

    Items are sorted by length so each batch pads to similar lengths (the trick sentence-transformers
    uses too): by exact token count where the backbone can tokenise ahead (``tokenize`` + ``collate``),
    else by ``backbone.sort_key``, decoding items only when their batch comes up — in ``workers`` processes
    (default ``default_workers``: images and audio decode while the forward pass runs; 0 decodes in this process).
    ``runtime``: a ``features.runtime.FrozenRuntime`` of this backbone that embeds each batch (onnxruntime for a
    pretrained text encoder); None embeds with ``backbone.embed``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    features = np.empty((len(items), backbone.hidden_size), dtype=np.float32)
    embed = backbone.embed if runtime is None else runtime.embed
    batches = _batches(backbone, items, batch_size, where, workers)
    bar = tqdm(total=len(items), desc=f"embedding ({backbone.source.spec.rsplit('/', 1)[-1]})", unit="ex",
               disable=not progress or None, leave=False)
    with torch.inference_mode(), bar:
        for positions, batch in batches:
            features[positions] = embed(batch).to("cpu", torch.float32).numpy()
            bar.update(len(positions))
    return features


def extract_layer_features(backbone, items: list, layers: list, *, batch_size: int = 32, progress: bool = True,
                           where=lambda i: f"row {i + 1}") -> list[np.ndarray]:
    """Pooled features of several layers of one backbone (``backbone.embed_layers``; ``None`` = its output),
    one array per layer in ``layers`` order, from a single forward pass per batch, batched like
    ``extract_features``: scoring the layers of one model costs one pass, not one per layer."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    outputs: list[np.ndarray] | None = None
    batches = _batches(backbone, items, batch_size, where, None)
    bar = tqdm(total=len(items), desc=f"embedding {len(layers)} layers ({backbone.source.spec.rsplit('/', 1)[-1]})",
               unit="ex", disable=not progress or None, leave=False)
    with torch.inference_mode(), bar:
        for positions, batch in batches:
            pooled = backbone.embed_layers(batch, list(layers))
            if outputs is None:
                outputs = [np.empty((len(items), p.shape[1]), dtype=np.float32) for p in pooled]
            for output, p in zip(outputs, pooled):
                output[positions] = p.to("cpu", torch.float32).numpy()
            bar.update(len(positions))
    return outputs if outputs is not None else [np.empty((0, 0), dtype=np.float32) for _ in layers]
