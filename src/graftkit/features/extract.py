"""Batched feature extraction from a frozen backbone: length-sorted batches, inference mode, progress bar."""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def extract_features(backbone, items: list, *, batch_size: int = 32, progress: bool = True,
                     where=lambda i: f"row {i + 1}") -> np.ndarray:
    """Pooled features for ``items`` in their original order, shape ``(len(items), hidden_size)``.

    Items are sorted by ``backbone.sort_key`` so each batch pads to similar lengths (the trick
    sentence-transformers uses too), and decoded only when their batch comes up.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = np.argsort([-backbone.sort_key(item) for item in items], kind="stable")
    features = np.empty((len(items), backbone.hidden_size), dtype=np.float32)
    bar = tqdm(total=len(items), desc=f"embedding ({backbone.source.spec.rsplit('/', 1)[-1]})", unit="ex",
               disable=not progress or None, leave=False)
    with torch.inference_mode(), bar:
        for start in range(0, len(items), batch_size):
            positions = order[start:start + batch_size]
            decoded = [backbone.load_item(items[p], where(int(p))) for p in positions]
            pooled = backbone.embed(backbone.preprocess(decoded))
            features[positions] = pooled.float().cpu().numpy()
            bar.update(len(positions))
    return features
