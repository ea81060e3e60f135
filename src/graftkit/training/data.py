"""Examples for the Trainer: raw references per row, decoded and preprocessed per batch by the backbone (text:
tokenised once per run up front, then only padded per batch).

Images and clips are decoded only when their batch comes up (``backbone.load_item``), and turned into
tensors by the model's own processor (``backbone.preprocess``), so training reads exactly what
feature extraction and prediction read. With an augmenter (``augment=True``), the rows of a training
``Examples`` (``augmented()``) are augmented between decoding and preprocessing, from ``(seed, epoch,
position)`` (``training.augment``); validation rows share the collator but are never augmented.

Side features (``side``: one float vector per row, e.g. a multi-input table's tabular columns imputed and
one-hot encoded, ``fusion/joint.py``) travel with each row and are batched as ``side``, which ``GraftModel``
concatenates to the pooled features before its output layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class Examples(Dataset):
    """A table's inputs and encoded targets (the task's: class ids, 0/1 label rows, values); each item carries
    its row location for error messages."""

    def __init__(self, table, labels: np.ndarray, augment: bool = False, encoded: dict | None = None,
                 side: np.ndarray | None = None):
        self.table = table
        self.items = table.items()
        self.labels = np.asarray(labels)
        self.augment = augment  # rows marked for the collator's augmenter (training rows only)
        self.encoded = encoded  # token ids of every row (``tokenized``), else None: decoded per batch
        self.side = None if side is None else np.asarray(side, dtype=np.float32)  # (rows, side_size) or None
        if self.side is not None and self.side.shape[0] != len(self.items):
            raise ValueError(f"{len(self.side)} rows of side features for {len(self.items)} examples")

    @property
    def side_size(self) -> int:
        """Width of the side features each row carries (0: none)."""
        return 0 if self.side is None else int(self.side.shape[1])

    def augmented(self) -> Examples:
        """The same examples, marked for augmentation (the training split under ``augment=True``); augmentation
        edits the raw input, so they are decoded and tokenised per batch again."""
        return Examples(self.table, self.labels, augment=True, side=self.side)

    def tokenized(self, backbone) -> Examples:
        """The same examples with every row tokenised once, up front (``backbone.tokenize``, one batched call of
        the fast tokenizer), so the collator only pads: not once per batch per epoch. Backbones that cannot
        tokenise ahead (images, audio) get the examples unchanged."""
        if not (callable(getattr(backbone, "tokenize", None)) and callable(getattr(backbone, "collate", None))):
            return self
        decoded = [backbone.load_item(item, self.table.where(i, self.table.input_column))
                   for i, item in enumerate(self.items)]
        return Examples(self.table, self.labels, augment=self.augment, encoded=backbone.tokenize(decoded),
                        side=self.side)

    def by_length(self) -> Examples:
        """The same examples ordered by token count (stable), for evaluation passes: the Trainer's sequential
        eval sampler then batches rows of like length, as the extractor does, instead of padding every batch to its
        longest random row (the per-epoch validation of a fine-tuning run costs what its extraction costs, which
        ``auto``'s estimates assume). Metrics do not depend on the order; labels and side features move with
        their rows. Without token ids (media, or not tokenised up front), as they are."""
        if self.encoded is None or "input_ids" not in self.encoded:
            return self
        order = np.argsort([len(ids) for ids in self.encoded["input_ids"]], kind="stable")
        return Examples(self.table.subset(order), self.labels[order], augment=self.augment,
                        encoded={key: [values[i] for i in order] for key, values in self.encoded.items()},
                        side=None if self.side is None else self.side[order])

    @property
    def groups_by_length(self) -> bool:
        """Whether the Trainer's length-grouped sampler can batch these rows: tokenised up front, each item then
        carries its ``input_ids`` at the top level, where that sampler reads the lengths."""
        return self.encoded is not None and "input_ids" in self.encoded

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
        if self.encoded is not None:
            row["encoded"] = {key: values[index] for key, values in self.encoded.items()}
            if self.groups_by_length:
                row["input_ids"] = row["encoded"]["input_ids"]  # read by the length-grouped sampler only
        if self.side is not None:
            row["side"] = self.side[index]
        return row


class BackboneCollator:
    """``[{item, label, ...}] -> {"inputs": preprocess(decoded), "labels": tensor}`` (int64 class ids, float
    label rows or values, as the task encoded them), plus ``"side"`` (float32, rows x side size) when the rows
    carry side features; rows carrying a
    ``position`` (a training ``Examples.augmented()``) go through ``augmenter`` at the current ``epoch``
    (set by the ``AugmentEpoch`` callback at the start of every epoch)."""

    def __init__(self, backbone, augmenter=None):
        self.backbone = backbone
        self.augmenter = augmenter
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> dict:
        batch = {"labels": torch.as_tensor(np.stack([row["label"] for row in rows]))}
        if "side" in rows[0]:
            batch["side"] = torch.from_numpy(np.stack([row["side"] for row in rows]))
        if all("encoded" in row for row in rows):  # tokenised once per run (``Examples.tokenized``): pad only
            encoded = {key: [row["encoded"][key] for row in rows] for key in rows[0]["encoded"]}
            return {"inputs": dict(self.backbone.collate(encoded, range(len(rows)))), **batch}
        decoded = [self.backbone.load_item(row["item"], row["where"]) for row in rows]
        if self.augmenter is not None:
            decoded = [self.augmenter(item, self.epoch, row["position"]) if "position" in row else item
                       for item, row in zip(decoded, rows)]
        return {"inputs": dict(self.backbone.preprocess(decoded)), **batch}

    def sample(self, examples: Examples, n: int = 2) -> dict:
        """The model inputs for the first ``n`` examples (for the layer probe; never augmented)."""
        rows = [examples[i] for i in range(min(n, len(examples)))]
        return self([{k: v for k, v in row.items() if k not in ("position", "encoded")} for row in rows])["inputs"]
