"""Examples for the Trainer: raw references per row, decoded and preprocessed per batch by the backbone.

Images and clips are decoded only when their batch comes up (``backbone.load_item``), and turned into
tensors by the model's own processor (``backbone.preprocess``), so training reads exactly what
feature extraction and prediction read. With an augmenter (``augment=True``), the rows of a training
``Examples`` (``augmented()``) are augmented between decoding and preprocessing, from ``(seed, epoch,
position)`` (``training.augment``); validation rows share the collator but are never augmented.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class Examples(Dataset):
    """A table's inputs and encoded targets (the task's: class ids, 0/1 label rows, values); each item carries
    its row location for error messages."""

    def __init__(self, table, labels: np.ndarray, augment: bool = False):
        self.table = table
        self.items = table.items()
        self.labels = np.asarray(labels)
        self.augment = augment  # rows marked for the collator's augmenter (training rows only)

    def augmented(self) -> Examples:
        """The same examples, marked for augmentation (the training split under ``augment=True``)."""
        return Examples(self.table, self.labels, augment=True)

    def __len__(self) -> int:
        return len(self.items)

    def collator(self, backbone, augmenter=None):
        """The collator that batches these examples for ``backbone``."""
        return BackboneCollator(backbone, augmenter)

    @staticmethod
    def features_of(backbone):
        """What the model's output layer reads: the backbone's pooled features."""
        return backbone.embed

    def __getitem__(self, index: int) -> dict:
        row = {"item": self.items[index], "label": self.labels[index],
               "where": self.table.where(index, self.table.input_column)}
        if self.augment:
            row["position"] = index
        return row


class BackboneCollator:
    """``[{item, label, ...}] -> {"inputs": preprocess(decoded), "labels": tensor}`` (int64 class ids, float
    label rows or values, as the task encoded them); rows carrying a
    ``position`` (a training ``Examples.augmented()``) go through ``augmenter`` at the current ``epoch``
    (set by the ``AugmentEpoch`` callback at the start of every epoch)."""

    def __init__(self, backbone, augmenter=None):
        self.backbone = backbone
        self.augmenter = augmenter
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> dict:
        decoded = [self.backbone.load_item(row["item"], row["where"]) for row in rows]
        if self.augmenter is not None:
            decoded = [self.augmenter(item, self.epoch, row["position"]) if "position" in row else item
                       for item, row in zip(decoded, rows)]
        return {"inputs": dict(self.backbone.preprocess(decoded)),
                "labels": torch.as_tensor(np.stack([row["label"] for row in rows]))}

    def sample(self, examples: Examples, n: int = 2) -> dict:
        """The model inputs for the first ``n`` examples (for the layer probe; never augmented)."""
        rows = [examples[i] for i in range(min(n, len(examples)))]
        return self([{k: v for k, v in row.items() if k != "position"} for row in rows])["inputs"]
