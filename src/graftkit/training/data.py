"""Examples for the Trainer: raw references per row, decoded and preprocessed per batch by the backbone.

Images and clips are decoded only when their batch comes up (``backbone.load_item``), and turned into
tensors by the model's own processor (``backbone.preprocess``), so training reads exactly what
feature extraction and prediction read.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class Examples(Dataset):
    """A table's inputs and encoded labels; each item carries its row location for error messages."""

    def __init__(self, table, labels: np.ndarray):
        self.table = table
        self.items = table.items()
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {"item": self.items[index], "label": int(self.labels[index]),
                "where": self.table.where(index, self.table.input_column)}


class BackboneCollator:
    """``[{item, label, ...}] -> {"inputs": preprocess(decoded), "labels": LongTensor}``."""

    def __init__(self, backbone):
        self.backbone = backbone

    def __call__(self, rows: list[dict]) -> dict:
        decoded = [self.backbone.load_item(row["item"], row["where"]) for row in rows]
        return {"inputs": dict(self.backbone.preprocess(decoded)),
                "labels": torch.tensor([row["label"] for row in rows], dtype=torch.long)}

    def sample(self, examples: Examples, n: int = 2) -> dict:
        """The model inputs for the first ``n`` examples (for the layer probe)."""
        return self([examples[i] for i in range(min(n, len(examples)))])["inputs"]
