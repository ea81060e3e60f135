"""Batched feature extraction from a frozen backbone: length-sorted batches, inference mode, progress bar."""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

# Backbones that can tokenise many items at once (``tokenize``) and pad any subset of them (``collate``)
# are read in windows of this many items: each window is tokenised in one call and sorted by exact
# token count, so a batch pads to within a token or two while memory stays bounded on big data sets.
WINDOW = 8192


def _sorted_batches(backbone, items: list, batch_size: int, where):
    """``(positions, batch tensors)`` in length-sorted order, decoding only the items of the batch in hand."""
    order = np.argsort([-backbone.sort_key(item) for item in items], kind="stable")
    for start in range(0, len(items), batch_size):
        positions = order[start:start + batch_size]
        yield positions, backbone.preprocess([backbone.load_item(items[p], where(int(p))) for p in positions])


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


def extract_features(backbone, items: list, *, batch_size: int = 32, progress: bool = True,
                     where=lambda i: f"row {i + 1}") -> np.ndarray:
    """Pooled features for ``items`` in their original order, shape ``(len(items), hidden_size)``.

    Items are sorted by length so each batch pads to similar lengths (the trick sentence-transformers
    uses too): by exact token count where the backbone can tokenise ahead (``tokenize`` + ``collate``),
    else by ``backbone.sort_key``, decoding items only when their batch comes up.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    features = np.empty((len(items), backbone.hidden_size), dtype=np.float32)
    pretokenize = callable(getattr(backbone, "tokenize", None)) and callable(getattr(backbone, "collate", None))
    batches = (_tokenized_batches if pretokenize else _sorted_batches)(backbone, items, batch_size, where)
    bar = tqdm(total=len(items), desc=f"embedding ({backbone.source.spec.rsplit('/', 1)[-1]})", unit="ex",
               disable=not progress or None, leave=False)
    with torch.inference_mode(), bar:
        for positions, batch in batches:
            features[positions] = backbone.embed(batch).to("cpu", torch.float32).numpy()
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
    pretokenize = callable(getattr(backbone, "tokenize", None)) and callable(getattr(backbone, "collate", None))
    batches = (_tokenized_batches if pretokenize else _sorted_batches)(backbone, items, batch_size, where)
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
